// MrAster dashboard. Plain JavaScript, no build step; talks only to this server's /api.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid instanceof Node ? kid : document.createTextNode(kid ?? ""));
  return e;
};

// ---- language: English in the code; every other language is one file, static/i18n/<code>.json,
// whose "strings" map the English text to its translation ({name} marks a value) -------------
const LANG_KEY = "mraster.lang";
const I18N = { lang: "en", locale: "en-GB", strings: {}, missing: new Set() };
const norm = (s) => s.replace(/\s+/g, " ").trim();
function t(text, params) {
  if (I18N.lang !== "en" && !(text in I18N.strings)) I18N.missing.add(text);  // the German walk test reads this
  let s = I18N.strings[text] ?? text;
  if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k] ?? "–") : m));
  return s;
}
// a code that has words in the catalogue (a setting's choice such as "with"), else the code itself
const tIf = (code) => I18N.strings[code] ?? code;
async function loadLanguage() {
  const offered = [...document.querySelectorAll("#lang option")].map((o) => o.value);
  let want = null;
  try { want = localStorage.getItem(LANG_KEY); } catch (e) { /* private mode: the browser's language */ }
  if (!offered.includes(want)) want = (navigator.languages || [navigator.language]).map((l) => String(l).slice(0, 2).toLowerCase()).find((l) => offered.includes(l)) || "en";
  $("#lang").value = want;
  if (want !== "en") {
    try {
      const cat = await (await fetch(`/static/i18n/${want}.json?v=${document.body.dataset.version}`)).json();
      I18N.strings = cat.strings; I18N.locale = cat.locale;
    } catch (e) { want = "en"; notice(`The translation could not be loaded (${e.message}); the page stays in English.`, "warn", "local-lang"); }
  }
  I18N.lang = want;
  document.documentElement.lang = want;
  translatePage();
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
  $("#time-rule").textContent = t("Every time on this page is in this browser's time zone ({zone}); only the P&L calendar's days, weeks and months are UTC.", { zone });
}
// the page's own text: elements marked data-i18n as a whole (they hold markup), the rest by text
function translatePage() {
  if (I18N.lang === "en") return;
  for (const e of document.querySelectorAll("[data-i18n]")) { const k = norm(e.innerHTML); if (I18N.strings[k]) e.innerHTML = I18N.strings[k]; }
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const k = norm(n.nodeValue);
    if (!k || !I18N.strings[k] || n.parentElement.closest("[data-i18n], script")) continue;
    n.nodeValue = n.nodeValue.replace(/^(\s*)[\s\S]*?(\s*)$/, (m, a, z) => a + I18N.strings[k] + z);
  }
  for (const a of ["placeholder", "title", "aria-label"]) {
    for (const e of document.querySelectorAll(`[${a}]`)) { const k = norm(e.getAttribute(a)); if (I18N.strings[k]) e.setAttribute(a, I18N.strings[k]); }
  }
}
$("#lang").addEventListener("change", (ev) => {
  try { localStorage.setItem(LANG_KEY, ev.target.value); } catch (e) { /* not remembered */ }
  location.reload();
});

// one formatter for every number, date and time on the page, charts included: the chosen
// language's conventions, this browser's time zone (the page says so)
const fmt = (x, d = 4) => (x === null || x === undefined) ? "–" : Number(x).toLocaleString(I18N.locale, { maximumFractionDigits: d });
// an amount of dollars: always two decimals ("0,60 USDT" beside "21,36 USDT"), never "-0,00"
const cents = (x) => (x === null || x === undefined) ? "–" : Number(Math.abs(x) < 0.005 ? 0 : x).toLocaleString(I18N.locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const pct = (x) => (x === null || x === undefined) ? "–" : Number(x).toLocaleString(I18N.locale, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
// whole seconds from a moment until now (the server sends moments, the page counts: an
// unchanged state is not sent again)
const since = (ms) => ms ? Math.max(0, Math.round((serverNow() - ms) / 1000)) : 0;
const age = (s) => s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${fmt(s / 3600, 1)} h`;
const time = (ms) => new Date(ms).toLocaleString(I18N.locale);
const clock = (ms) => new Date(ms).toLocaleTimeString(I18N.locale);
// a price as the exchange quotes it: the symbol's tick decides the decimals (guessed from the
// size only for a symbol the bot has not scanned)
function price(x, symbol) {
  const places = symbol && state.data && state.data.ticks ? state.data.ticks[symbol] : undefined;
  if (places === undefined || x === null || x === undefined) return fmt(x, Math.abs(x) >= 1000 ? 2 : Math.abs(x) >= 1 ? 4 : 6);
  return Number(x).toLocaleString(I18N.locale, { minimumFractionDigits: places, maximumFractionDigits: places });
}
const exitWords = (r) => r ? t(String(r).replace(/_/g, "-")) : "";  // stop, take-profit, manual…
const side = (s) => s === "BUY" ? t("long") : s === "SELL" ? t("short") : (s || "");

// a refusal as a sentence: the routes' own are sentences already; a body the schema refused
// comes as a list of {loc, msg}, read as "field: rule" (it was shown as its JSON)
function detailText(d) {
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => e && e.msg
    ? `${(e.loc || []).filter((x) => x !== "body").join(".")}: ${e.msg}` : JSON.stringify(e)).join("; ");
  return JSON.stringify(d);
}

class HttpError extends Error {
  constructor(status, body) {
    super(body && body.detail ? detailText(body.detail) : `HTTP ${status}`);
    this.status = status; this.body = body;
  }
}

// the dashboard's clock less this browser's: a phone whose clock is off would otherwise show
// wrong ages and countdowns (every answer carries the server's Date, to the second)
let clockSkew = 0;
const serverNow = () => Date.now() + clockSkew;

async function api(method, path, body) {
  const opts = { method, headers: { "X-MrAster-CSRF": "1" }, credentials: "same-origin" };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const sent = Date.now();
  const r = await fetch(path, opts);
  const server = Date.parse(r.headers.get("Date") || "");
  if (!isNaN(server)) {  // (a second's rounding and the trip: only a clock that is really off)
    const skew = server + 500 - (sent + Date.now()) / 2;
    clockSkew = Math.abs(skew) > 2000 ? skew : 0;
  }
  const data = await r.json().catch(() => null);
  if (r.status === 401) { showLogin(); throw new HttpError(401, data); }
  if (!r.ok) throw new HttpError(r.status, data);
  return data;
}

// ---- notices: every failure is shown on the page -------------------------------------------
function notice(text, level = "error", id = null, dismissable = true) {
  const box = $("#notices");
  if (id && box.querySelector(`[data-id="${CSS.escape(id)}"]`)) return;
  const n = el("div", { class: `notice ${level}`, "data-id": id || "" }, text);
  if (dismissable) n.append(el("button", { class: "close", title: t("dismiss"), onclick: async () => {
    if (id && !id.startsWith("local-")) { try { await api("POST", `/api/alerts/${encodeURIComponent(id)}/dismiss`); } catch (e) { /* shown on next refresh */ } }
    n.remove();
  } }, "×"));
  box.prepend(n);  // newest on top: the box scrolls, the latest stays in view
}
// a server's or browser's error stays in its own words (marked raw: not the page's text)
const fail = (e) => notice(el("span", { class: "raw" }, e.message || String(e)), "error", "local-" + Date.now());

// ---- confirmation dialog (typed confirmation for anything that closes trades) -------------
function confirmTyped(text, expected) {
  return new Promise((resolve) => {
    const d = $("#dialog");
    $("#dialog-text").textContent = text;
    const input = $("#dialog-input");
    input.value = ""; input.placeholder = expected;
    d.returnValue = "";
    d.addEventListener("close", () => resolve(d.returnValue === "ok" ? input.value.trim() : null), { once: true });
    d.showModal(); input.focus();
  });
}

// ---- login and first-run wizard ------------------------------------------------------------
function showLogin() { $("#overlay").hidden = false; $("#login-panel").hidden = false; $("#wizard").hidden = true; }
$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { await api("POST", "/api/login", { token: $("#login-token").value }); location.reload(); }
  catch (e) { $("#login-error").textContent = e.message; }
});

const KEY_GROUPS = [  // titles translated where shown
  ["API wallet (V3, new accounts)", ["ASTER_USER_ADDRESS", "ASTER_SIGNER_ADDRESS", "ASTER_SIGNER_PRIVATE_KEY"]],
  ["API key (V1, older accounts)", ["ASTER_API_KEY", "ASTER_API_SECRET"]],
  ["AI services", ["ASTER_OPENAI_API_KEY", "ASTER_CHAT_OPENAI_API_KEY", "ASTER_AI_NEWS_API_KEY"]],
];

function secretInputs(form, config, onSaved) {
  form.replaceChildren();
  const byKey = Object.fromEntries(config.settings.map((s) => [s.key, s]));
  for (const [title, keys] of KEY_GROUPS) {
    form.append(el("h3", {}, t(title)));
    for (const key of keys) {
      const s = byKey[key];
      if (!s) continue;
      if (!s.secret) {  // an address: not secret, shown and saved like any setting
        const input = el("input", { name: s.key, value: s.value || "", placeholder: "0x…", autocomplete: "off" });
        form.append(el("div", { class: "row" }, el("label", {}, s.key), input,
          el("button", { type: "button", onclick: async () => {
            try { await api("PUT", "/api/config", { values: { [s.key]: input.value.trim() } }); onSaved(); }
            catch (e) { fail(e.body && e.body.errors ? new Error(e.body.errors.map((x) => x.message).join("; ")) : e); }
          } }, t("Save")), "", el("small", { class: "muted" }, t(s.help))));
        continue;
      }
      secretRow(form, s, onSaved);
    }
  }
}

function secretRow(form, s, onSaved) {
  const input = el("input", { type: "password", name: s.key, placeholder: s.is_set ? t("set ({value}) – type to replace", { value: s.value }) : t("not set"), autocomplete: "off" });
  const save = async (value) => {
    try { await api("PUT", "/api/config/secrets", { values: { [s.key]: value } }); onSaved(); }
    catch (e) { fail(e); }
  };
  form.append(el("div", { class: "row" }, el("label", {}, s.key), input,
    el("button", { type: "button", onclick: () => save(input.value) }, t("Save")),
    s.is_set ? el("button", { type: "button", class: "danger", onclick: () => save(null) }, t("Remove")) : "",
    el("small", { class: "muted" }, t(s.help))));
}

async function testConnection(target) {
  target.textContent = t("testing…");
  try {
    const r = await api("POST", "/api/setup/test-connection");
    target.textContent = r.message; target.className = (r.ok ? "ok" : "error") + " raw";
  } catch (e) { target.textContent = e.message; target.className = "error raw"; }
}

async function chooseMode(mode, confirm = "", override = "") {
  await api("POST", "/api/setup", { mode, confirm, override });
  await loadConfig();
}

async function showDrill() {
  const d = await api("GET", "/api/drill");
  const j = d.job, last = d.last || {};
  let text;
  if (j.state === "running") text = t("Fire drill running: {done} — {phase}", { done: pct(j.progress || 0), phase: j.phase || t("starting") });
  else if (j.state === "error") text = t("The fire drill could not run: {error}", { error: j.error });
  else if (last.hash === d.settings_hash) {
    const c = last.scorecard || {};
    text = last.passed ? t("Fire drill passed with these settings: {entries} entries, {trades} trades, no duplicate orders, every trade adds up, whole again {cycles} cycle(s) after the network healed.", { entries: c.entries, trades: c.trades, cycles: c.recovery_cycles })
      : t("Fire drill FAILED: {why}", { why: (last.why_words ? last.why_words.map((w) => said(w).textContent) : last.why || []).join("; ") });
  } else text = last.hash ? t("Your settings changed since the last drill: run it again.") : t("No fire drill with these settings yet.");
  $("#wizard-drill-status").textContent = text;
  $("#wizard-drill-status").className = j.state === "running" ? "muted" : d.live_unlocked ? "pos" : "warn";
  if (j.state === "running") setTimeout(showDrill, 1000);
}

function showWizard() {
  $("#overlay").hidden = false; $("#wizard").hidden = false; $("#login-panel").hidden = true;
  for (const b of document.querySelectorAll("#wizard [data-mode]")) {
    b.onclick = async () => {
      $("#wizard-error").textContent = "";
      if (b.dataset.mode === "live") {
        $("#wizard-live").hidden = false;
        secretInputs($("#wizard-keys"), state.config, loadConfig);
        showDrill().catch(fail);
        return;
      }
      try { await chooseMode(b.dataset.mode); $("#overlay").hidden = true; }
      catch (e) { $("#wizard-error").textContent = e.message; }
    };
  }
  $("#wizard-test").onclick = () => testConnection($("#wizard-conn"));
  $("#wizard-drill").onclick = async () => {
    try { await api("POST", "/api/drill"); showDrill(); } catch (e) { $("#wizard-error").textContent = e.message; }
  };
  $("#wizard-live-go").onclick = async () => {
    try { await chooseMode("live", $("#wizard-confirm").value.trim(), $("#wizard-override").value.trim()); $("#overlay").hidden = true; }
    catch (e) { $("#wizard-error").textContent = e.message; }
  };
}

// ---- state polling and the views -----------------------------------------------------------
// an equity curve is shown whole: by default the chart keeps half a pixel per point and cut off
// the start of any curve longer than twice its width (a 20-day backtest showed its second half)
const WHOLE_CURVE = { timeVisible: true, minBarSpacing: 0.001, fixLeftEdge: true, fixRightEdge: true };

// ---- theme: the system's unless the user picked one in the header (kept in this browser) ----
const THEME_KEY = "mraster.theme";
const CHARTS = [];  // every chart on the page, re-coloured when the theme changes
function chartLook() {
  const css = getComputedStyle(document.documentElement), v = (k) => css.getPropertyValue(k).trim();
  return { layout: { background: { color: v("--card") }, textColor: v("--fg") },
    grid: { vertLines: { color: v("--line") }, horzLines: { color: v("--line") } } };
}
// chart times in this browser's zone and the page's language, like every table (the library's
// own default is UTC), prices with the page's formatter
function tick(ts, type) {
  const d = new Date(ts * 1000), L = I18N.locale;
  if (type === 0) return String(d.getFullYear());
  if (type === 1) return d.toLocaleDateString(L, { month: "short" });
  if (type === 2) return d.toLocaleDateString(L, { day: "numeric", month: "short" });
  return d.toLocaleTimeString(L, { hour: "2-digit", minute: "2-digit", ...(type === 4 ? { second: "2-digit" } : {}) });
}
// priceFormatter null: each series formats its own scale (the candle chart's price, RSI, volume)
function makeChart(box, height, timeScale, priceFormatter = price) {
  const chart = LightweightCharts.createChart(box, { height, autoSize: true, timeScale: { ...timeScale, tickMarkFormatter: tick },
    localization: { locale: I18N.locale, ...(priceFormatter ? { priceFormatter } : {}), timeFormatter: (ts) => time(ts * 1000) }, ...chartLook() });
  CHARTS.push(chart);
  return chart;
}
function applyTheme(choice) {
  if (choice === "light" || choice === "dark") document.documentElement.dataset.theme = choice;
  else delete document.documentElement.dataset.theme;
  try { localStorage.setItem(THEME_KEY, choice); } catch (e) { /* private mode: not remembered */ }
  $("#theme").value = choice;
  for (const c of CHARTS) c.applyOptions(chartLook());
}
$("#theme").addEventListener("change", (ev) => applyTheme(ev.target.value));
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme($("#theme").value));
applyTheme((() => { try { return localStorage.getItem(THEME_KEY) || "auto"; } catch (e) { return "auto"; } })());
const state = { config: null, data: null, equityChart: null, equitySeries: null, candle: null };

async function refresh() {
  try {
    const d = await api("GET", "/api/state");
    state.data = d;
    const stale = document.querySelector('#notices [data-id="local-state"]');
    if (stale) stale.remove();  // the state is readable again
    renderHeader(d); renderNotices(d); renderAnswers(d); renderOverview(d); renderDecisions(d); renderMarket(d); renderAI(d);
    renderHistory(); renderChartSelect(d);
  } catch (e) {
    if (e.status !== 401) notice(t("The dashboard cannot read the bot's state: {error}", { error: e.message }), "error", "local-state");
  }
}

function renderHeader(d) {
  const bot = d.bot;
  const live = bot.paper === false;
  const badge = $("#mode-badge");
  badge.textContent = live ? t("LIVE – real money") : t("PAPER");
  badge.className = "badge " + (live ? "live" : "paper");
  let text = t("bot: {state}", { state: t(bot.state) });
  if (bot.running) text += " · " + t("pid {pid} · up {age}", { pid: bot.pid, age: age(since(bot.started_ms)) });
  if (bot.restarts) text += " · " + t("{n} restart(s)", { n: bot.restarts });
  if (bot.state === "backoff") text += " · " + t("restarting in {n} s", { n: Math.max(0, Math.round((bot.next_restart_ms - serverNow()) / 1000)) });
  if (bot.waiting) text += " · " + t("waiting for the exchange ({why}); positions are guarded again once it answers", { why: bot.waiting });
  if (!bot.running && bot.last_exit_reason) text += " · " + t("last exit: {why}", { why: bot.last_exit_reason });
  const paused = bot.running && d.commands.paused;
  if (paused) text += " · " + t("entries paused (stops and take-profits keep working)");
  $("#bot-state").textContent = text;
  $("#bot-state").className = "badge " + (bot.waiting || paused ? "warn" : bot.running ? "ok" : bot.state === "crash_loop" ? "bad" : "");
  $("#btn-start").disabled = bot.running;
  $("#btn-stop").disabled = !bot.running && bot.state !== "backoff";
  $("#source-banner").hidden = d.market_source !== "simulator";
  $("#source-why").replaceChildren(...(d.market_source === "simulator" && d.market_source_why ? fallbackWhy(d.market_source_why) : []));
  if (state.config && d.market_source !== state.sourceShown) { state.sourceShown = d.market_source; renderModeChoice(); }
  const br = d.breakers || [];
  $("#breaker-banner").hidden = !br.length;
  $("#breaker-text").replaceChildren(...br.flatMap((b, i) => [i ? " · " : "", saidOr(b.words, b.message), `; ${b.symbol ? t("no new trades on {symbol}", { symbol: b.symbol }) : t("no new trades (stops and take-profits keep working)")}, ${b.until ? t("lifts {time}", { time: time(b.until) }) : t("until you lift it")}`]));
  const c = d.commands;
  const pb = $("#btn-pause");
  pb.textContent = c.paused ? t("Resume entries") : t("Pause entries");
  pb.title = c.paused ? (c.paused_acknowledged ? t("paused: no new entries; stops and take-profits keep working") : t("pause requested; the bot confirms within a second while running")) : "";
  pb.classList.toggle("active", c.paused);
}

// a close or flatten: its notice waits for the bot's answer and then says it (done, partly done
// or refused, why)
function commandNotice(resp, what) {
  const id = resp && resp.command ? "cmd-" + resp.command.id : "local-" + Date.now();
  const note = resp && resp.note ? ` (${resp.note})` : "";
  notice(el("span", {}, t("{what}: sent to the bot, waiting for its answer…", { what }) + note), "info", id);
  const n = $("#notices").querySelector(`[data-id="${CSS.escape(id)}"]`);
  if (n) n.dataset.what = what;
}
function renderAnswers(d) {
  for (const c of (d.commands && d.commands.recent) || []) {
    const n = c.ack && $("#notices").querySelector(`[data-id="${CSS.escape("cmd-" + c.id)}"]:not([data-answered])`);
    if (!n) continue;
    // partly done: a flatten closed some positions and not others (not "refused": it did act)
    const answer = c.ack.ok ? "done" : c.ack.partly ? "partly done" : "refused";
    n.dataset.answered = answer.replace(" ", "-");
    n.className = `notice ${c.ack.ok ? "info" : c.ack.partly ? "warn" : "error"}`;
    n.firstChild.replaceChildren(`${n.dataset.what}: ${t(answer)} — `, saidOr(c.ack.words, c.ack.message));
  }
}

// a sentence the bot or the dashboard recorded as template and values: the template in the
// reader's language, numbers in its conventions, text values (errors, names) as they came
// (a state file of the wrong shape — no template, no values — shows what there is, never breaks
// the page)
function said(w) {
  if (!w || typeof w.template !== "string") return el("span", { class: "raw" }, w && typeof w === "object" ? "" : String(w ?? ""));
  const out = [], text = t(w.template), params = w.params && typeof w.params === "object" ? w.params : {};
  let at = 0;
  for (const m of text.matchAll(/\{(\w+)\}/g)) {
    out.push(text.slice(at, m.index));
    const v = params[m[1]];
    out.push(typeof v === "number" ? fmt(v, 10) : v && typeof v === "object" && v.template ? said(v)
      : el("span", { class: "raw" }, v == null ? "–" : String(v)));
    at = m.index + m[0].length;
  }
  out.push(text.slice(at));
  return el("span", {}, ...out);
}
// a sentence kept as words when it has them, else the server's own text (marked raw): words of
// the wrong shape (no template) show that text too, not an empty sentence
const saidOr = (w, text) => w && typeof w.template === "string" ? said(w)
  : el("span", { class: "raw" }, text ?? "");
function renderNotices(d) {
  const shown = new Set([...document.querySelectorAll("#notices .notice")].map((n) => n.dataset.id));
  for (const a of d.alerts.slice(0, 20).reverse()) {
    if (!shown.has(a.id)) notice(el("span", {}, `${time(a.time)} · `, saidOr(a.words, a.message)), a.level === "error" ? "error" : "warn", a.id);
  }
}

const ended = (x) => x.status === "ended";
function renderOverview(d) {
  const p = d.performance;
  const cards = [["Equity", cents(p.equity) + " USDT"], ["Closed trades", p.trades], ["Win rate", pct(p.win_rate)],
    ["Profit factor", p.profit_factor === null ? "–" : fmt(p.profit_factor, 2)], ["Expectancy", p.expectancy_r === null ? "–" : fmt(p.expectancy_r, 2) + " R"],
    ["Total PnL", cents(p.total_pnl) + " USDT"], ["Max drawdown", p.max_drawdown === null ? "–" : `${cents(p.max_drawdown)} USDT (${pct(p.max_drawdown_pct)})`]];
  const x = d.exposure || {};
  cards.push(["Unrealised PnL", cents(x.unrealized) + " USDT"], ["Margin used", x.margin_used == null ? "–" : cents(x.margin_used) + " USDT"],
    ["Notional / equity", x.notional_x == null ? "–" : fmt(x.notional_x, 2) + "×"], ["Open risk / equity", x.open_risk_pct == null ? "–" : pct(x.open_risk_pct)]);
  $("#perf-cards").replaceChildren(...cards.map(([k, v]) => el("div", { class: "card" }, el("small", {}, t(k)), el("b", {}, String(v)))));
  const tb = $("#positions tbody");
  // each cell names its column (data-label): a phone shows a position as a card of labelled
  // fields, so PnL, stop and protection are in view without scrolling the table sideways
  const cell = (label, attrs, ...kids) => el("td", { ...attrs, "data-label": t(label) }, ...kids);
  tb.replaceChildren(...d.positions.map((x) => el("tr", { "data-symbol": x.symbol, "data-chart": x.symbol, "data-status": x.status, "data-protection": x.protection.status, class: x.protection.status === "problem" ? "unprotected" : null },
    cell("Symbol", { class: "symbol" }, x.symbol), cell("Side", { class: x.side === "BUY" ? "long" : "short" }, side(x.side)),
    // a trade found over, waiting for its booking: the symbol's position is someone else's now
    ended(x) ? cell("PnL", { "data-testid": "position-pnl" }, "–") :
      cell("PnL", { class: x.pnl >= 0 ? "pos" : "neg", "data-testid": "position-pnl" }, cents(x.pnl) + " USDT"), cell("R", {}, ended(x) ? "–" : fmt(x.r, 2) + " R"),
    cell("Size", {}, fmt(x.qty)), cell("Entry", {}, price(x.entry, x.symbol)), cell("Mark", {}, price(x.mark, x.symbol)),
    cell("Stop", { "data-testid": "position-stop" }, price(x.stop, x.symbol)), cell("Take-profit", {}, price(x.take_profit, x.symbol)),
    cell("Liquidation", {}, x.liquidation ? `${price(x.liquidation, x.symbol)} (${pct(x.liquidation_distance)})` : "–"),
    protectionCell(x),
    ended(x) ? cell("Age", { "data-testid": "position-ended" }, t("closed; booked once the exchange cancels its stop and take-profit (see its notice)"))
      : cell("Age", {}, x.status === "open" ? age(since(x.opened_at)) : t(x.status)),
    el("td", { class: "actions" }, ended(x) ? "" : el("button", { class: "danger", onclick: () => closePosition(x.symbol) }, t("Close…"))))));
  if (d.audit && !state.auditShown) renderAudit(d.audit);
  $("#protection-log").replaceChildren(...(d.protection_log || []).slice(0, 30).map((e) => el("li", {}, `${time(e.time)} ${e.symbol} — ${t(e.who)}: `, saidOr(e.words, e.what))));
  if (!d.positions.length) tb.append(el("tr", {}, el("td", { colspan: 13, class: "muted" }, d.bot.running ? t("No open positions.") : t("No open positions. Start the bot to trade."))));
  $("#external").replaceChildren(...(d.external_positions.length ? [
    t("Positions the bot did not open (left alone: no entry, add, flip, brackets or close on these symbols):") + " ",
    ...d.external_positions.map((e) => el("span", { class: "external", "data-external": e.symbol }, `${e.symbol} ${e.amount} `, e.why ? el("span", {}, "(", saidOr(e.why_words, e.why), ") ") : "",
      el("button", { onclick: () => adoptPosition(e.symbol) }, t("Let the bot manage it…")), " "))] : []));
  const tl = d.telemetry;
  $("#telemetry").textContent = tl.cycle ? t("Cycle {cycle}: {symbols} symbols, {evaluated} evaluated, {seconds} s, request weight {weight}", { cycle: tl.cycle, symbols: tl.symbols, evaluated: tl.evaluated, seconds: fmt(tl.duration_s, 2), weight: tl.weight }) : "";
  drawEquity(d.equity_curve);
}

function drawEquity(curve) {
  if (!window.LightweightCharts) return;
  if (!state.equityChart) {
    state.equityChart = makeChart($("#equity-chart"), 220, WHOLE_CURVE);
    state.equitySeries = state.equityChart.addSeries(LightweightCharts.LineSeries, { lineWidth: 2 });
  }
  const pts = []; let last = -1;
  for (const [t, v] of curve) { const s = Math.floor(t / 1000); if (s > last) { pts.push({ time: s, value: v }); last = s; } }
  const first = !state.equityShown && pts.length;
  $("#equity-note").hidden = pts.length > 0;  // an empty frame says why it is empty
  state.equitySeries.setData(pts);
  if (first) { state.equityChart.timeScale().fitContent(); state.equityShown = true; }  // the whole curve, then the user's zoom
}

function renderAudit(a) {
  if (!a) return;
  if (!a.compared) { $("#audit").replaceChildren(el("p", { class: "muted" }, t(a.why || "Nothing to compare yet."))); return; }
  const div = a.divergent || [], fills = (a.fills || []).filter((f) => f.cause !== "as expected");
  $("#audit").replaceChildren(
    el("p", { class: a.divergent_total ? "warn" : "pos" }, t("{compared} decisions replayed from {cycles} cycles: {matched} the same, {different} different ({share}). {late} late cycle(s), {refused} refused order(s).", {
      compared: a.compared, cycles: a.cycles, matched: a.matched, different: a.divergent_total, share: pct(a.divergence_share),
      late: Array.isArray(a.late_cycles) ? a.late_cycles.length : a.late_cycles || 0, refused: Array.isArray(a.refusals) ? a.refusals.length : a.refusals || 0 })),
    div.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["Time", "Symbol", "Live", "Replay", "Cause"].map((h) => el("th", {}, t(h))))),
      el("tbody", {}, ...div.map((d) => el("tr", {}, el("td", {}, time(d.time)), el("td", {}, d.symbol), el("td", {}, `${d.live}${d.live_side ? " " + side(d.live_side) : ""}`),
        el("td", {}, `${d.replay}${d.replay_side ? " " + side(d.replay_side) : ""}`), el("td", {}, saidOr(d.cause_words, d.cause)))))) : "",
    fills.length ? el("p", {}, t("Fills beyond their quote:") + " " + fills.map((f) => `${f.symbol} ${fmt(f.slippage_bps, 1)} bps`).join(", ")) : "");
}

function protectionCell(x) {
  const p = x.protection;
  const label = { "data-label": t("Protection") };
  if (p.status === "unverified") return el("td", { ...label, class: "muted protection" }, t("not read back yet"));
  // a stop moved past the entry no longer risks money: it locks some in (it read "at risk -6.77")
  const locks = p.at_risk != null && p.at_risk < 0;
  const facts = t(locks ? "stop {stop} / TP {tp} on the exchange · the stop locks in {risk} USDT (fees, funding {funding} USDT)" : "stop {stop} / TP {tp} on the exchange · at risk {risk} USDT (fees, funding {funding} USDT)", { stop: p.stop == null ? "–" : price(p.stop, x.symbol), tp: p.tp == null ? "–" : price(p.tp, x.symbol), risk: p.at_risk == null ? "–" : cents(Math.abs(p.at_risk)), funding: fmt(p.funding, 4) }) +
    (p.stop_liq_distance == null ? "" : " · " + t("stop {distance} from liquidation", { distance: pct(p.stop_liq_distance) })) + (p.repairs ? " · " + t("repaired {n}×", { n: p.repairs }) : "");
  // what the exchange did not answer, so the figure above is partly assumed (it said so only in the log)
  const unread = [p.fee_assumed ? t("fee rate not read yet: {rate} % assumed", { rate: fmt(p.fee_rate * 100, 4) }) : "",
    p.funding_unread_since ? t("funding not read since {time}", { time: time(p.funding_unread_since) }) : ""].filter(Boolean);
  const small = el("small", {}, facts, ...unread.map((u) => el("span", { class: "warn", "data-testid": "protection-unread" }, " · " + u)));
  if (p.status === "problem") return el("td", { ...label, class: "neg text protection", "data-testid": "protection-problem" }, el("b", {}, t("NOT as the bot believes:") + " "), ...p.problems_words.flatMap((w, i) => [i ? "; " : "", said(w)]), el("br", {}), small);
  return el("td", { ...label, class: "pos text protection", "data-testid": "protection-ok" }, "✓ " + t("protected since {time}", { time: time(p.since) }), el("br", {}), small);
}

async function adoptPosition(symbol) {
  const typed = await confirmTyped(t("The bot takes over {symbol}: its own stop and take-profit replace the protective orders on the exchange, and it manages and books the position from now on. Type ADOPT {symbol} to confirm.", { symbol }), `ADOPT ${symbol}`);
  if (typed === null) return;
  try { await api("POST", `/api/positions/${symbol}/adopt`, { confirm: typed }); notice(t("{symbol} handed to the bot; it takes over at its next cycle.", { symbol }), "info", "local-" + Date.now()); }
  catch (e) { fail(e); }
}

async function closePosition(symbol) {
  const typed = await confirmTyped(t("Close {symbol} at market? Type the symbol to confirm.", { symbol }), symbol);
  if (typed === null) return;
  try { commandNotice(await api("POST", `/api/positions/${symbol}/close`, { confirm: typed }), t("Close of {symbol}", { symbol })); refresh(); }
  catch (e) { fail(e); }
}

$("#btn-lift").addEventListener("click", async () => {
  const typed = await confirmTyped(t("Allow new trades again before the circuit breaker lifts by itself? Type LIFT to confirm."), "LIFT");
  if (typed === null) return;
  try { await api("POST", "/api/protections/lift", { confirm: typed }); notice(t("Sent to the bot: the circuit breakers are lifted."), "info", "local-" + Date.now()); refresh(); }
  catch (e) { fail(e); }
});

$("#btn-audit").addEventListener("click", async () => {
  $("#audit").replaceChildren(el("p", { class: "muted" }, t("Replaying the last day…")));
  try { const r = await api("POST", "/api/audit"); state.auditShown = true; renderAudit(r); } catch (e) { fail(e); }
});

$("#btn-flatten").addEventListener("click", async () => {
  const typed = await confirmTyped(t("Close every position of the bot at market and pause new entries? Type FLATTEN to confirm."), "FLATTEN");
  if (typed === null) return;
  try { commandNotice(await api("POST", "/api/positions/flatten", { confirm: typed }), t("Flatten (new entries are paused)")); refresh(); }
  catch (e) { fail(e); }
});

function renderAI(d) {
  const ai = d.ai || {};
  $("#ai-status").textContent = ai.status === "on"
    ? t("On: model {model}. Each trade candidate is reviewed before entry; the AI can lower size and leverage or veto, never raise them.", { model: ai.model })
    : ai.copilots === "rules" ? t("AI mode without an LLM — {why}.", { why: t(ai.why) })
    : t("Off — {why}.", { why: t(ai.why || "rule-based decisions") });
  const b = d.ai_budget;
  $("#ai-cards").replaceChildren(...(b ? [["Spent today", `$${fmt(b.spent, 4)}`], ["Daily budget", b.limit > 0 ? `$${fmt(b.limit, 2)}` : t("unlimited")],
    ["Remaining", b.remaining === null ? "–" : `$${fmt(b.remaining, 4)}`], ["Calls today", b.calls], ["Budget", t(b.enforced ? (b.strict ? "strict" : "soft") : "ignored by preset")]] : [])
    .map(([k, v]) => el("div", { class: "card" }, el("small", {}, t(k)), el("b", {}, String(v)))));
  const avg = (o) => Object.entries(o || {}).map(([k, v]) => t("{use} {calls} × avg ${cost}", { use: k, calls: v.calls, cost: fmt(v.cost / v.calls, 5) })).join(" · ");
  $("#ai-costs").textContent = b && b.calls ? t("Today by use: {uses}. By model: {models}.", { uses: avg(b.kinds), models: avg(b.models) }) : "";
  $("#ai-sentinel tbody").replaceChildren(...(d.sentinel || []).map((a) => el("tr", {}, el("td", {}, a.symbol),
    el("td", { class: a.label === "red" ? "neg" : "warn" }, t(a.label)), el("td", {}, fmt(a.event_risk, 2)), el("td", {}, fmt(a.hype, 2)), el("td", {}, `${fmt(a.change_pct, 1)} %`),
    el("td", { class: "raw" }, (a.news || []).join(" · ")))));
  if (!(d.sentinel || []).length) $("#ai-sentinel tbody").append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, t("No warnings (the sentinel runs in AI mode)."))));
  $("#ai-pending tbody").replaceChildren(...(ai.pending || []).map((p) => el("tr", {}, el("td", {}, p.symbol), el("td", {}, t(p.state)), el("td", {}, age(p.age_s)))));
  $("#ai-plans tbody").replaceChildren(...(ai.recent_plans || []).slice().reverse().map((p) => el("tr", {},
    el("td", {}, p.symbol), el("td", { class: p.take ? "pos" : "neg" }, p.take ? t("yes") : t("no")), el("td", {}, fmt(p.size_multiplier, 2) + "×"),
    el("td", {}, p.leverage ? p.leverage + "×" : "–"), el("td", {}, t(p.source)), el("td", { class: "raw" }, p.explanation))));
  renderChat(d.chat || { log: [], proposals: [] });
  renderCopilots(d.copilots);
}

function renderChat(ch) {
  const log = $("#chat-log");
  const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.replaceChildren(...ch.log.map((m) => el("div", { class: `msg ${m.role} raw` }, m.content,
    m.note ? el("small", { class: "muted" }, ` (${m.note})`) : "")));
  if (stick) log.scrollTop = log.scrollHeight;
  $("#chat-proposals tbody").replaceChildren(...ch.proposals.slice().reverse().map((p) => el("tr", {},
    el("td", {}, p.symbol), el("td", {}, side(p.side)), el("td", { class: "raw" }, p.reason),
    el("td", {}, p.ack ? `${p.ack.ok ? t("done") : t("refused")}: ` : t(p.status), p.ack ? saidOr(p.ack.words, p.ack.message) : ""),
    el("td", {}, p.status === "proposed" ? el("span", {},
      el("button", { onclick: () => confirmProposal(p) }, t("Confirm…")), " ",
      el("button", { class: "secondary", onclick: () => api("POST", `/api/ai/proposals/${p.id}/dismiss`).then(refresh, fail) }, t("Dismiss"))) : ""))));
}

async function confirmProposal(p) {
  const typed = await confirmTyped(t(p.side === "BUY" ? "Send a long on {symbol} to the bot? It is sized by your risk per trade with the bot's stop and take-profit, and still passes every filter and limit. Type {symbol} to confirm."
    : "Send a short on {symbol} to the bot? It is sized by your risk per trade with the bot's stop and take-profit, and still passes every filter and limit. Type {symbol} to confirm.", { symbol: p.symbol }), p.symbol);
  if (typed === null) return;
  try { await api("POST", `/api/ai/proposals/${p.id}/confirm`, { confirm: typed }); notice(t("{symbol} sent to the bot.", { symbol: p.symbol }), "info", "local-" + Date.now()); refresh(); }
  catch (e) { fail(e); }
}

$("#chat-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("#chat-input");
  const message = input.value.trim();
  if (!message) return;
  input.disabled = true;
  $("#chat-mode").textContent = t("thinking…");
  try { const r = await api("POST", "/api/ai/chat", { message, lang: I18N.lang }); input.value = ""; $("#chat-mode").textContent = r.source === "ai" ? t("answered by the AI") : t("answered by rules"); refresh(); }
  catch (e) { fail(e); $("#chat-mode").textContent = ""; }
  finally { input.disabled = false; input.focus(); }
});

function renderCopilots(c) {
  if (!c) {
    $("#playbook").replaceChildren(el("p", { class: "muted" }, t("The playbook, the tuner and postmortems run in AI mode (ASTER_MODE=ai).")));
    $("#tuner").replaceChildren(); $("#postmortems tbody").replaceChildren(); $("#copilot-problem").textContent = "";
    return;
  }
  const pb = c.playbook, bad = c.llm_problem;
  $("#copilot-problem").textContent = bad ? t("Last LLM problem ({kind}, {time}): {why}; the rules stood in.", { kind: bad.kind, time: time(bad.time), why: bad.why }) : "";
  $("#playbook").replaceChildren(...(pb ? [el("p", {}, el("b", {}, t("Regime: {regime}", { regime: t(pb.regime) })), " — " + t("longs ×{long}, shorts ×{short} ({source}, {time})", { long: fmt(pb.size_factor.BUY, 2), short: fmt(pb.size_factor.SELL, 2), source: t(pb.source), time: time(pb.at) })),
    el("ul", {}, ...(pb.directives_words || pb.directives).map((x) => el("li", {}, typeof x === "string" ? saidOr(null, x) : said(x)))),
    ...(pb.blocks || []).filter((b) => b.until > serverNow()).map((b) => el("p", { class: "warn", "data-testid": "playbook-block" },
      t("Blocked: {what} until {time} — ", { what: (b.symbol || t("every symbol")) + (b.side ? ", " + t(b.side === "BUY" ? "longs" : "shorts") : ""), time: time(b.until) }), saidOr(b.reason_words, b.reason))),
    Object.keys(pb.tighten || {}).length ? el("p", {}, t("Tightened: {what}", { what: Object.entries(pb.tighten).map(([k, v]) => k === "ASTER_MIN_EDGE_R" ? `${k} +${v}` : `${k} ×${v}`).join(", ") })) : "",
    pb.bias && (pb.bias.sl !== 1 || pb.bias.tp !== 1) ? el("p", {}, t("Stop ×{sl}, target ×{tp} (inside the tuner's limits)", { sl: fmt(pb.bias.sl, 2), tp: fmt(pb.bias.tp, 2) })) : "",
    pb.note ? el("p", { class: "muted raw" }, pb.note) : ""] : [el("p", { class: "muted" }, t("No playbook yet."))]));
  const tu = c.tuner;
  $("#tuner").replaceChildren(...(tu ? [el("p", {}, t("From {trades} trades (confidence {confidence}, {source}): size S ×{s}, M ×{m}, L ×{l}; stop ×{sl}; target ×{tp}.", { trades: tu.trades, confidence: pct(tu.confidence), source: t(tu.source), s: fmt(tu.size_bias.S, 2), m: fmt(tu.size_bias.M, 2), l: fmt(tu.size_bias.L, 2), sl: fmt(tu.sl_bias, 2), tp: fmt(tu.tp_bias, 2) })),
    ...c.tuner_log.slice().reverse().slice(0, 3).map((x) => el("p", { class: "muted" }, `${time(x.time)}: ${t(x.source)}`, x.note ? el("span", { class: "raw" }, " — " + x.note) : ""))] : []));
  $("#postmortems tbody").replaceChildren(...c.postmortem.map((p) => el("tr", {}, el("td", {}, p.symbol), el("td", {}, p.trades),
    el("td", { class: p.edge >= 0 ? "pos" : "neg" }, fmt(p.edge, 2)), el("td", {}, pct(p.quick_stop_rate)), el("td", {}, saidOr(p.lesson_words, p.lesson)), el("td", {}, t(p.source)))));
}

function renderDecisions(d) {
  $("#decisions tbody").replaceChildren(...d.decisions.map((x) => el("tr", { "data-chart": x.symbol },
    el("td", {}, x.symbol), el("td", { class: x.action === "TAKE" ? "pos" : "" }, t(x.action)), el("td", { class: "text" }, t(x.why || "")),
    el("td", {}, side(x.side)), el("td", {}, fmt(x.rsi, 1)), el("td", {}, x.htf_trend == null ? "" : t(String(x.htf_trend))), el("td", {}, x.expected_r == null ? "" : fmt(x.expected_r, 2) + " R"))));
  $("#skips tbody").replaceChildren(...d.skip_reasons.map((x) => el("tr", {}, el("td", { title: x.reason }, t(x.label)), el("td", {}, x.count), el("td", { class: "text" }, t(x.why)))));
  $("#learning").textContent = learningText((d.telemetry || {}).learning);
}

// the alpha model's standing: whether it may veto yet, and how many vetoed signals it follows
function learningText(l) {
  if (!l) return "";
  if (!l.alpha) return t("Alpha model off: it vetoes nothing.");
  let text = l.lessons < l.warmup
    ? t("Alpha model still learning: {n} of {warmup} outcomes seen; it vetoes nothing before that.", { n: l.lessons, warmup: l.warmup })
    : t("Alpha model active: it may veto signals, learned from {n} outcomes.", { n: l.lessons });
  if (l.shadows != null) text += " " + t("Vetoed signals followed without an order: {k}.", { k: l.shadows });
  return text;
}

function renderMarket(d) {
  const box = $("#heatmap");
  if (!d.market.length) { box.replaceChildren(el("p", { class: "muted" }, t("No market data yet: the heatmap fills after the bot's first cycle."))); return; }
  const maxLog = Math.max(...d.market.map((m) => Math.log10(1 + m.quote_volume)));
  box.replaceChildren(...d.market.sort((a, b) => b.quote_volume - a.quote_volume).map((m) => {
    const c = Math.max(-10, Math.min(10, m.change_pct)) / 10;
    const bg = c >= 0 ? `rgba(22,163,74,${0.15 + 0.75 * c})` : `rgba(220,38,38,${0.15 + 0.75 * -c})`;
    const size = 70 + 90 * Math.log10(1 + m.quote_volume) / (maxLog || 1);
    // words, not codes: the reason's short label (its full sentence is the tile's tooltip)
    const sig = m.action === "TAKE" ? (m.side === "BUY" ? "▲ " + t("long taken") : "▼ " + t("short taken")) : (m.label ? t(m.label) : "");
    return el("div", { class: "tile", style: `background:${bg};width:${size}px;height:${size * 0.7}px`, title: t("{symbol}: {change} in 24 h, volume {volume} USDT", { symbol: m.symbol, change: `${fmt(m.change_pct, 2)} %`, volume: fmt(m.quote_volume, 0) }) + (m.why ? " · " + t(m.why) : ""), "data-symbol": m.symbol, "data-chart": m.symbol },
      el("b", {}, m.symbol), el("span", {}, `${m.change_pct >= 0 ? "+" : ""}${fmt(m.change_pct, 2)} %`), el("small", {}, sig));
  }));
}

// History reads the trade journal page by page; it is fetched again when the filter changes,
// the page turns, or a trade closes (the state's history_total moves).
const hist = { offset: 0, limit: 50, seen: null, source: null };

function histParams() {
  const p = new URLSearchParams({ source: $("#hist-source").value });
  const add = (k, v) => { if (v) p.set(k, v); };
  add("symbol", $("#hist-symbol").value.trim().toUpperCase().replace(/[^A-Z0-9]/g, ""));
  add("side", $("#hist-side").value); add("result", $("#hist-result").value); add("reason", $("#hist-reason").value);
  const day = (id, plus) => { const v = $(id).value; return v ? String(Date.parse(v + "T00:00:00") + plus) : ""; };
  add("since", day("#hist-since", 0)); add("until", day("#hist-until", 86400000));
  return p;
}

async function renderHistory(force = false) {
  const d = state.data; if (!d) return;
  if (!hist.source) { hist.source = d.mode === "live" ? "live" : "paper"; $("#hist-source").value = hist.source; }
  const key = `${d.history_total}|${d.stats && d.stats.cycles}`;
  if (!force && key === hist.seen) return;
  hist.seen = key;
  const p = histParams();
  $("#hist-csv").href = `/api/journal/trades.csv?${p}`;
  $("#hist-orders-csv").href = `/api/journal/orders.csv?source=${p.get("source")}`;
  let page, cal;
  try {
    [page, cal] = await Promise.all([
      api("GET", `/api/journal/trades?${p}&offset=${hist.offset}&limit=${hist.limit}`),
      api("GET", `/api/journal/calendar?${p}&period=${$("#cal-period").value}`)]);
  } catch (e) { hist.seen = null; fail(e); return; }
  const rows = page.rows;
  $("#history tbody").replaceChildren(...rows.map((h) => el("tr", { "data-chart": $("#hist-source").value === "backtest" ? null : h.symbol },
    el("td", {}, time(h.closed_at)), el("td", {}, h.symbol), el("td", {}, side(h.side)), el("td", {}, fmt(h.qty)),
    el("td", {}, price(h.entry, h.symbol)), el("td", {}, price(h.exit, h.symbol)), el("td", {}, exitWords(h.reason)), el("td", { class: h.pnl > 0 ? "pos" : "neg" }, cents(h.pnl)),
    el("td", {}, fmt(h.fees, 4)), el("td", {}, fmt(h.funding, 4)), el("td", {}, fmt(h.r, 2)),
    // each note in the reader's language where it has words (the AI's own explanation has none)
    el("td", { class: "notes" }, ...(h.notes || []).flatMap((n, i) => [i ? " · " : "", typeof n === "string" ? el("span", { class: "raw" }, n) : saidOr(n.words, n.message)])))));
  if (!rows.length) $("#history tbody").append(el("tr", {}, el("td", { colspan: 12, class: "muted" }, t("No closed trades match."))));
  const last = Math.min(page.total, hist.offset + rows.length);
  $("#hist-page").textContent = page.total ? t("{from}–{to} of {total}", { from: hist.offset + 1, to: last, total: page.total }) : "";
  $("#hist-newer").disabled = hist.offset === 0;
  $("#hist-older").disabled = last >= page.total;
  $("#hist-summary").textContent = page.total
    ? t(page.total === 1 ? "1 trade · {wins} wins ({share}) · PnL {pnl} USDT" : "{total} trades · {wins} wins ({share}) · PnL {pnl} USDT",
      { total: page.total, wins: page.wins, share: pct(page.wins / page.total), pnl: cents(page.pnl) })
    : "";
  $("#calendar tbody").replaceChildren(...cal.rows.map((c) => el("tr", {},
    el("td", {}, c.period), el("td", {}, c.trades), el("td", {}, c.wins),
    el("td", { class: c.pnl > 0 ? "pos" : "neg" }, cents(c.pnl)), el("td", {}, fmt(c.fees, 4)), el("td", {}, fmt(c.r, 2)))));
  if (!cal.rows.length) $("#calendar tbody").append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, t("No closed trades yet."))));
}
for (const id of ["#hist-source", "#hist-symbol", "#hist-side", "#hist-result", "#hist-reason", "#hist-since", "#hist-until", "#cal-period"]) {
  $(id).addEventListener("input", () => { hist.offset = 0; renderHistory(true); });
}
$("#hist-newer").addEventListener("click", () => { hist.offset = Math.max(0, hist.offset - hist.limit); renderHistory(true); });
$("#hist-older").addEventListener("click", () => { hist.offset += hist.limit; renderHistory(true); });

// ---- candlestick chart -----------------------------------------------------------------------
// The candles the bot judged on either of its timeframes, its own EMAs and RSI (with the RSI
// bounds of the settings), volume, its entries and exits, and the open position's stop,
// take-profit and entry lines (redrawn each refresh: the stop line follows a trailing stop).
function renderChartSelect(d) {
  const sel = $("#chart-symbol");
  const held = [...new Set(d.positions.map((p) => p.symbol))].sort();
  const symbols = [...held, ...d.market.map((m) => m.symbol).filter((s) => !held.includes(s)).sort()];
  const want = sel.value || d.chart_symbol || symbols[0] || "";
  if (want && !symbols.includes(want)) symbols.push(want);  // a past trade's symbol, clicked in History
  if (sel.options.length !== symbols.length) {
    sel.replaceChildren(...symbols.map((s) => el("option", { value: s }, s)));
  }
  sel.value = want;
  if ($("#tab-chart").classList.contains("active")) drawCandles(want);
}
async function pickChart(symbol) {
  try { await api("PUT", "/api/ui", { chart_symbol: symbol }); } catch (e) { fail(e); }  // the bot sends its candles
  drawCandles(symbol);
}
$("#chart-symbol").addEventListener("change", () => pickChart($("#chart-symbol").value));
$("#chart-tf").addEventListener("change", () => drawCandles($("#chart-symbol").value));
// a click on a heatmap tile, a position, a decision or a trade opens that symbol's chart
document.addEventListener("click", (ev) => {
  const row = ev.target.closest("[data-chart]");
  if (!row || ev.target.closest("button, a, input, select, summary")) return;
  const sel = $("#chart-symbol"), symbol = row.dataset.chart;
  if (![...sel.options].some((o) => o.value === symbol)) sel.append(el("option", { value: symbol }, symbol));
  sel.value = symbol;
  $('#tabs button[data-tab="chart"]').click();
  pickChart(symbol);
});

const CHART_COLORS = { stop: "#dc2626", take_profit: "#16a34a", entry: "#2563eb", exit: "#7c3aed",
  ema_fast: "#f59e0b", ema_slow: "#8b5cf6", ema_trend: "#8b5cf6", rsi: "#0ea5e9" };
function candleChart(symbol, tf) {
  if (state.candle) { state.candle.chart.remove(); CHARTS.splice(CHARTS.indexOf(state.candle.chart), 1); }
  const L = LightweightCharts, chart = makeChart($("#candle-chart"), 540, { timeVisible: true, rightOffset: 15 }, null);  // room for the lines' labels
  const own = (format, digits) => ({ priceFormat: { type: "custom", formatter: format, minMove: 10 ** -digits } });
  const places = (state.data && state.data.ticks && state.data.ticks[symbol]) ?? 6;
  const volume = chart.addSeries(L.HistogramSeries, { priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false, ...own((x) => fmt(x, 0), 0) });
  chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  const series = chart.addSeries(L.CandlestickSeries, own((x) => price(x, symbol), places));
  const line = (kind, pane, digits, format) => chart.addSeries(L.LineSeries, { color: CHART_COLORS[kind], lineWidth: kind === "rsi" ? 2 : 1,
    lastValueVisible: kind === "rsi", priceLineVisible: false, crosshairMarkerVisible: false, ...own(format, digits) }, pane);
  const ind = tf === "htf" ? { ema_trend: line("ema_trend", 0, places, (x) => price(x, symbol)) }
    : { ema_fast: line("ema_fast", 0, places, (x) => price(x, symbol)), ema_slow: line("ema_slow", 0, places, (x) => price(x, symbol)),
      rsi: line("rsi", 1, 1, (x) => fmt(x, 1)) };
  if (ind.rsi) chart.panes()[1].setHeight(130);
  return { chart, series, volume, ind, key: `${symbol} ${tf}`, lines: [], bounds: [], markers: null };
}

async function drawCandles(symbol) {
  if (!symbol || !window.LightweightCharts) return;
  const tf = $("#chart-tf").value;
  let c;
  try { c = await api("GET", `/api/chart/${symbol}?timeframe=${tf}`); } catch (e) { fail(e); return; }
  if (symbol !== $("#chart-symbol").value || tf !== $("#chart-tf").value) return;  // the user moved on meanwhile
  for (const o of $("#chart-tf").options) o.textContent = t(o.value === "ltf" ? "signal {interval}" : "trend {interval}", { interval: c.intervals[o.value] });
  const fresh = !state.candle || state.candle.key !== `${symbol} ${tf}`;
  if (fresh) state.candle = candleChart(symbol, tf);
  // asked every refresh, changed once a cycle: an unchanged chart is not drawn again
  const sig = JSON.stringify([c.candles[c.candles.length - 1], c.lines, c.markers.length]);
  if (state.candle.sig === sig) return;
  state.candle.sig = sig;
  const { series, volume, ind } = state.candle, sec = (ms) => Math.floor(ms / 1000);
  series.setData(c.candles.map(([ts, o, h, l, cl]) => ({ time: sec(ts), open: o, high: h, low: l, close: cl })));
  volume.setData(c.candles.map(([ts, o, , , cl, v]) => ({ time: sec(ts), value: v, color: cl >= o ? "rgba(22,163,74,0.35)" : "rgba(220,38,38,0.35)" })));
  for (const [k, s] of Object.entries(ind)) s.setData((c.indicators[k] || []).map(([ts, v]) => ({ time: sec(ts), value: v })));
  for (const pl of state.candle.lines) series.removePriceLine(pl);
  const names = { stop: t("stop"), take_profit: t("take-profit"), entry: t("entry") };
  state.candle.lines = c.lines.map((l) => series.createPriceLine({ price: l.price, color: CHART_COLORS[l.kind], title: names[l.kind] || l.kind, lineWidth: l.kind === "stop" ? 2 : 1 }));
  if (ind.rsi && fresh) {
    state.candle.bounds = [[c.rsi_bounds.buy_min, t("long above {value}", { value: fmt(c.rsi_bounds.buy_min, 0) })],
      [c.rsi_bounds.sell_max, t("short below {value}", { value: fmt(c.rsi_bounds.sell_max, 0) })]]
      .map(([v, title]) => ind.rsi.createPriceLine({ price: v, color: CHART_COLORS.rsi, lineStyle: 2, lineWidth: 1, title }));
  }
  // markers sit beside the candle they belong to (above or below, never on the price), in the
  // candle that holds their moment on this timeframe
  const first = c.candles.length ? c.candles[0][0] : Infinity;
  const markers = c.markers.filter((m) => m.time >= first).map((m) => {
    const long = m.side === "BUY", entry = m.kind === "entry";
    return { time: Math.floor(m.time / 1000 / c.interval_s) * c.interval_s, position: (entry === long) ? "belowBar" : "aboveBar",
      color: entry ? CHART_COLORS.entry : CHART_COLORS.exit, shape: entry ? (long ? "arrowUp" : "arrowDown") : "circle",
      text: entry ? "" : `${exitWords(m.reason)} ${m.r != null ? fmt(m.r, 2) + " R" : ""}`.trim() };
  });
  if (state.candle.markers) state.candle.markers.setMarkers(markers);
  else state.candle.markers = LightweightCharts.createSeriesMarkers(series, markers);
  if (fresh && c.candles.length) state.candle.chart.timeScale().fitContent();
  $("#candle-chart").dataset.shown = state.candle.key;
  const n = c.periods;
  const legend = tf === "htf" ? [[CHART_COLORS.ema_trend, t("EMA {n}: its slope is the trend filter", { n: n.ema_trend })]]
    : [[CHART_COLORS.ema_fast, `EMA ${n.ema_fast}`], [CHART_COLORS.ema_slow, `EMA ${n.ema_slow}`], [CHART_COLORS.rsi, t("RSI {n} with the entry bounds", { n: n.rsi })]];
  $("#chart-legend").replaceChildren(...legend.map(([color, text]) => el("span", {}, el("i", { style: `background:${color}` }), text)));
  if (!c.candles.length && state.data && state.data.chart_symbol !== symbol) {
    api("PUT", "/api/ui", { chart_symbol: symbol }).catch(fail);  // the bot sends its candles next cycle
  }
  $("#chart-note").textContent = c.candles.length ? "" : t("No candles for {symbol} yet: the bot sends them with its next cycle (while it runs).", { symbol });
}

// ---- live log (Server-Sent Events) -----------------------------------------------------------
const logState = { paused: false, buffer: [] };
function logLine(ev) {
  const kinds = new Set([...document.querySelectorAll("#log-filters input[type=checkbox][value]:checked")].map((i) => i.value));
  const text = ev.event === "log" || ev.event === "supervisor" ? `${ev.level || ""} ${ev.message}` :
    `${ev.event} ${Object.entries(ev).filter(([k]) => !["event", "ts", "seq", "kind"].includes(k)).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ")}`;
  const line = el("div", { class: `line ${ev.kind}`, "data-kind": ev.kind }, `${clock(ev.ts || Date.now())} ${text}`);
  line.hidden = !kinds.has(ev.kind);
  const box = $("#log");
  box.append(line);
  while (box.childElementCount > 2000) box.firstElementChild.remove();
  if ($("#log-autoscroll").checked) box.scrollTop = box.scrollHeight;
}
function connectStream() {
  const es = new EventSource("/api/stream");
  es.onopen = () => { $("#log-status").textContent = t("connected"); };
  es.onerror = () => { $("#log-status").textContent = t("disconnected – reconnecting…"); };
  es.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (logState.paused) logState.buffer.push(ev); else logLine(ev);
  };
}
$("#btn-log-pause").addEventListener("click", () => {
  logState.paused = !logState.paused;
  $("#btn-log-pause").textContent = logState.paused ? t("Resume ({n} waiting)", { n: logState.buffer.length }) : t("Pause");
  if (!logState.paused) { logState.buffer.splice(0).forEach(logLine); }
});
$("#log-filters").addEventListener("change", () => {
  const kinds = new Set([...document.querySelectorAll("#log-filters input[type=checkbox][value]:checked")].map((i) => i.value));
  for (const l of document.querySelectorAll("#log .line")) l.hidden = !kinds.has(l.dataset.kind);
});

// ---- bot controls ------------------------------------------------------------------------------
async function botAction(action) {
  try { await api("POST", `/api/bot/${action}`); }
  catch (e) {
    if (e.body && e.body.errors) notice(`${e.message}: ${e.body.errors.map((x) => x.message).join("; ")}`, "error", "local-" + Date.now());
    else fail(e);
  }
  $("#restart-banner").hidden = action !== "stop" ? true : $("#restart-banner").hidden;
  refresh();
}
$("#btn-start").addEventListener("click", () => botAction("start"));
$("#btn-stop").addEventListener("click", () => botAction("stop"));
$("#btn-restart").addEventListener("click", () => botAction("restart"));
$("#btn-restart2").addEventListener("click", () => botAction("restart"));
$("#btn-pause").addEventListener("click", async () => {
  try { await api("POST", "/api/bot/pause", { paused: !state.data.commands.paused }); refresh(); } catch (e) { fail(e); }
});

// ---- settings: presets, mode, keys, pro editor ---------------------------------------------------
async function loadConfig() {
  const cfg = await api("GET", "/api/config");
  state.config = cfg;
  for (const e of cfg.errors) notice(t("Saved setting not valid (ignored): {error}", { error: e.words ? said(e.words).textContent : e.message }), "error", "cfg-" + e.field);
  for (const n of cfg.notes || []) notice(el("span", {}, saidOr(n.words, n.message)), "warn", "cfg-note-" + String(n.message).split(" ")[0]);
  renderPresets(); renderModeChoice(); secretInputs($("#keys-form"), cfg, loadConfig); renderPro();
  return cfg;
}

function afterSave(r) {
  if (r.restart_needed) $("#restart-banner").hidden = false;
}

async function renderPresets() {
  let p;
  try { p = await api("GET", "/api/presets"); } catch (e) { $("#presets").replaceChildren(el("p", { class: "error" }, e.message)); return; }
  $("#presets").replaceChildren(...p.presets.map((x) => el("div", { class: "card preset" + (x.name === p.current ? " current" : ""), "data-preset": x.name },
    el("b", {}, x.name.toUpperCase()), el("small", {}, x.name === p.current ? t("active") : t("{n} change(s)", { n: x.changes.length })),
    el("button", { onclick: () => previewPreset(x) }, x.name === p.current ? t("Details") : t("Preview")))));
  const typed = $("#saved-preset-name");  // a re-render (after loading the settings) keeps what was typed
  const name = el("input", { id: "saved-preset-name", maxlength: "40", placeholder: t("name"), "aria-label": t("Name of the new preset") });
  if (typed && document.activeElement === typed) queueMicrotask(() => name.focus());
  if (typed) name.value = typed.value;
  const save = el("button", { "data-testid": "save-preset", onclick: async () => {
    try { await api("POST", "/api/saved-presets", { name: name.value }); notice(t("Your settings were saved as preset “{name}”.", { name: name.value.trim() }), "info", "local-" + Date.now()); name.value = ""; renderPresets(); }
    catch (e) { fail(e); }
  } }, t("Save current settings as preset"));
  $("#saved-presets").replaceChildren(
    ...p.saved.map((x) => el("div", { class: "card preset", "data-saved-preset": x.name },
      el("b", {}, x.name), el("small", {}, t("{n} setting(s), saved {time}; {changes} change(s) now", { n: x.settings, time: time(x.saved_at), changes: x.changes.length })),
      el("button", { onclick: () => previewPreset(x) }, t("Preview")),
      el("button", { onclick: async () => {
        const to = window.prompt(t("New name for “{name}”", { name: x.name }), x.name);
        if (to === null || to.trim() === x.name) return;
        try { await api("PATCH", `/api/saved-presets/${encodeURIComponent(x.name)}`, { name: to }); renderPresets(); } catch (e) { fail(e); }
      } }, t("Rename")),
      el("button", { onclick: async () => {
        if (!window.confirm(t("Delete your preset “{name}”? Your current settings stay as they are.", { name: x.name }))) return;
        try { await api("DELETE", `/api/saved-presets/${encodeURIComponent(x.name)}`); renderPresets(); } catch (e) { fail(e); }
      } }, t("Delete")))),
    el("p", { class: "saved-preset-form" }, name, " ", save));
}

// the changes as they are now, not as when the card was drawn: a preset applied a moment ago (the
// cards not yet redrawn) made a saved preset's preview say "nothing would change"
async function previewPreset(drawn) {
  let x = drawn;
  try {
    const p = await api("GET", "/api/presets");
    x = (drawn.saved ? p.saved : p.presets).find((y) => y.name === drawn.name) || drawn;
  } catch (e) { /* the drawn card's changes, when the server cannot be asked */ }
  const box = $("#preset-preview");
  box.hidden = false;
  const rows = x.changes.map((c) => el("tr", {}, el("td", {}, c.key), el("td", {}, JSON.stringify(c.from)), el("td", {}, "→"), el("td", {}, JSON.stringify(c.to))));
  const label = x.saved ? `“${x.name}”` : x.name.toUpperCase();
  const url = x.saved ? `/api/saved-presets/${encodeURIComponent(x.name)}/apply` : `/api/presets/${x.name}`;
  box.replaceChildren(el("h3", {}, t("Preset {name}", { name: label })),
    x.changes.length ? el("table", { "data-testid": "preset-changes" }, el("thead", {}, el("tr", {}, el("th", {}, t("Setting")), el("th", {}, t("Now")), el("th", {}), el("th", {}, t("After")))), el("tbody", {}, ...rows))
      : el("p", {}, t("Nothing would change.")),
    x.kept_by_override.length ? el("p", { class: "warn" }, t("Kept because .env or the environment sets them: {list}", { list: x.kept_by_override.map((k) => `${k.key}=${k.value}`).join(", ") })) : "",
    x.ignores_ai_budget ? el("p", { class: "warn" }, t("This preset ignores the AI daily budget (spending is still recorded).")) : "",
    x.warning ? el("p", { class: "warn" }, t(x.warning)) : "",
    el("button", { "data-testid": "apply-preset", disabled: x.changes.length ? null : "disabled", onclick: async () => {
      let body = {};
      if (x.warning) {
        const typed = await confirmTyped(t(x.warning), "ATT");
        if (typed === null) return;
        body = { confirm: typed };
      }
      try { const r = await api("POST", url, body); afterSave(r); box.hidden = true; notice(t("Preset {name} applied.", { name: label }), "info", "local-" + Date.now()); loadConfig(); }
      catch (e) { fail(e); }
    } }, t("Apply {name}", { name: label })),
    el("button", { onclick: () => { box.hidden = true; } }, t("Cancel")));
}

// paper mode on the real market falls back to the simulator when the market cannot be reached
// at start: said wherever the mode is shown, with the bot's reason in its own words
const fallbackWhy = (why) => [t("Paper mode on the real market was chosen, but the market could not be reached when the bot started:") + " ",
  el("span", { class: "raw" }, why), ". " + t("Restart the bot when the network is back.")];
function renderModeChoice() {
  const get = (k) => state.config.settings.find((s) => s.key === k).value;
  const now = !get("ASTER_PAPER") ? "live" : get("ASTER_OFFLINE") ? "offline" : "paper";
  const label = { paper: t("Paper on the real market"), offline: t("Offline simulator"), live: t("Live trading") };
  const d = state.data, fellBack = now === "paper" && d && d.market_source === "simulator";
  $("#mode-choice").replaceChildren(el("p", {}, t("Now: {mode}.", { mode: label[now] }) + " "),
    fellBack ? el("p", { class: "warn", "data-testid": "mode-fallback" }, el("b", {}, t("The bot trades the simulator's synthetic market instead.") + " "),
      ...(d.market_source_why ? fallbackWhy(d.market_source_why) : [])) : "",
    ...["paper", "offline"].filter((m) => m !== now).map((m) => el("button", { onclick: async () => {
      try { await chooseMode(m); notice(t("Mode set to {mode}; restart the bot to use it.", { mode: label[m] }), "info", "local-" + Date.now()); } catch (e) { fail(e); }
    } }, t("Switch to {mode}", { mode: label[m] }))),
    now !== "live" ? el("button", { class: "danger", "data-testid": "switch-live", onclick: async () => {
      // the keys are checked first: nobody types TRADE REAL MONEY for a switch that cannot happen
      try { await api("POST", "/api/setup", { mode: "live" }); }
      catch (e) { if (!e.message.startsWith("confirm:")) { fail(e); return; } }
      const typed = await confirmTyped(t("Live trading sends real orders with real money. Type TRADE REAL MONEY to confirm."), "TRADE REAL MONEY");
      if (typed === null) return;
      try { await chooseMode("live", typed); notice(t("Live mode saved; restart the bot to use it."), "warn", "local-" + Date.now()); } catch (e) { fail(e); }
    } }, t("Switch to live…")) : "");
}

function inputFor(s) {
  if (s.kind === "bool") return el("input", { type: "checkbox", name: s.key, ...(s.value ? { checked: "" } : {}) });
  if (s.kind === "choice") { const sel = el("select", { name: s.key }, ...s.choices.map((c) => el("option", { value: c }, tIf(c)))); sel.value = s.value; return sel; }
  const attrs = { name: s.key, value: Array.isArray(s.value) ? s.value.join(",") : s.value };
  if (s.kind === "int" || s.kind === "float") Object.assign(attrs, { type: "number", step: s.kind === "int" ? "1" : "any", min: s.min ?? undefined, max: s.max ?? undefined });
  return el("input", attrs);
}

// what a setting accepts, in words of the page's language (the server's sentence is English)
function allowedText(s) {
  const bound = (x, inf) => x == null ? inf : fmt(x, 8);
  if (s.kind === "bool") return t("yes or no");
  if (s.kind === "choice") return t("one of {list}", { list: s.choices.map(tIf).join(", ") });
  if (s.kind === "int" || s.kind === "float") return t(s.kind === "int" ? "a whole number from {min} to {max}" : "a number from {min} to {max}", { min: bound(s.min, "−∞"), max: bound(s.max, "∞") });
  const text = /at most (\d+) characters/.exec(s.allowed);
  return text && s.kind === "str" ? t("a single line of at most {n} characters", { n: text[1] }) : t(s.allowed);
}

function renderPro() {
  const cfg = state.config;
  const groups = $("#pro-groups");
  groups.replaceChildren(...cfg.groups.map((g) => el("fieldset", { "data-group": g }, el("legend", {}, t((cfg.group_titles || {})[g] || g)),
    ...cfg.settings.filter((s) => s.group === g && !s.secret).map((s) => el("div", { class: "row", "data-key": s.key },
      el("label", { for: "" }, s.key), inputFor(s),
      el("small", { class: "muted" }, `${t(s.help)} ${t("Allowed: {range}.", { range: allowedText(s) })}${s.overridden ? " " + t("Set in {source}: that value wins.", { source: s.source }) : ""}${s.restart ? "" : " " + t("(no restart needed)")}`),
      s.saved ? el("button", { type: "button", class: "reset", "data-testid": "reset-setting", title: t("Back to the default: remove your saved value"),
        onclick: () => resetSettings([s.key]) }, "↺ " + t("default")) : el("span", {}),
      el("span", { class: "error field-error" }))))));
  $("#btn-reset-all").hidden = !cfg.settings.some((s) => s.saved && !s.secret && !MODE_KEYS.includes(s.key));
  filterPro();
}
// search by name or by words of the help text, in the page's language
function filterPro() {
  const q = $("#pro-search").value.trim().toLowerCase();
  for (const fs of document.querySelectorAll("#pro-groups fieldset")) {
    let any = false;
    for (const row of fs.querySelectorAll(".row")) {
      const hit = !q || row.textContent.toLowerCase().includes(q) || row.dataset.key.toLowerCase().includes(q);
      row.hidden = !hit; any = any || hit;
    }
    fs.hidden = !any;
  }
}
$("#pro-search").addEventListener("input", filterPro);
const MODE_KEYS = ["ASTER_PAPER", "ASTER_OFFLINE"];  // the wizard's choice: changed under Trading mode only
async function resetSettings(keys) {
  try {
    const r = await api("PUT", "/api/config", { values: Object.fromEntries(keys.map((k) => [k, null])) });
    $("#pro-result").textContent = t("Back to their defaults: {list}.", { list: keys.join(", ") });
    afterSave(r); await loadConfig();
  } catch (e) { proErrors(e); }
}
$("#btn-reset-all").addEventListener("click", async () => {
  const keys = state.config.settings.filter((s) => s.saved && !s.secret && !MODE_KEYS.includes(s.key)).map((s) => s.key);
  const typed = await confirmTyped(t("Remove all {n} saved settings, so every one is its preset's or default value again? Your keys and the trading mode stay. Type RESET to confirm.", { n: keys.length }), "RESET");
  if (typed === "RESET") resetSettings(keys);
});
// every rejected field at once: listed above the form (in view) and beside each field
function proErrors(e) {
  const errs = (e.body && e.body.errors) || [];
  $("#pro-result").textContent = errs.length ? t("{n} setting(s) not valid; nothing was saved", { n: errs.length }) : e.message;
  $("#pro-errors").replaceChildren(...errs.map((x) => el("li", {}, el("a", { href: "#", onclick: (ev) => {
    ev.preventDefault(); const row = $("#pro-form").querySelector(`[data-key="${x.field}"]`); if (row) { row.hidden = false; row.scrollIntoView({ block: "center" }); row.querySelector("input, select")?.focus(); }
  } }, x.field), ": ", saidOr(x.words, x.message))));
  $("#pro-errors").hidden = !errs.length;
  for (const x of errs) {
    const row = $("#pro-form").querySelector(`[data-key="${x.field}"]`);
    if (row) { row.hidden = false; row.closest("fieldset").hidden = false; row.querySelector(".field-error").replaceChildren(saidOr(x.words, x.message)); }
  }
  (errs.length ? $("#pro-errors") : $("#pro-result")).scrollIntoView({ block: "start" });
}
$("#pro-toggle").addEventListener("change", () => { $("#pro-form").hidden = !$("#pro-toggle").checked; });
$("#pro-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const values = {};
  for (const s of state.config.settings.filter((x) => !x.secret)) {
    const input = $("#pro-form").querySelector(`[name="${s.key}"]`);
    let v = s.kind === "bool" ? input.checked : input.value;
    if ((s.kind === "int" || s.kind === "float") && v.trim() !== "" && Number.isFinite(Number(v))) v = Number(v);  // saved as a number
    const cur = Array.isArray(s.value) ? s.value.join(",") : s.value;
    if (s.kind === "bool" ? v !== cur : String(v) !== String(cur)) values[s.key] = v;
  }
  for (const e of document.querySelectorAll(".field-error")) e.textContent = "";
  $("#pro-errors").hidden = true;
  if (!Object.keys(values).length) { $("#pro-result").textContent = t("Nothing changed."); return; }
  try {
    const r = await api("PUT", "/api/config", { values });
    $("#pro-result").textContent = t("Saved: {list}.", { list: r.changed.join(", ") || t("no effective change") });
    afterSave(r); await loadConfig();
  } catch (e) { proErrors(e); }
});
$("#btn-test-conn").addEventListener("click", () => testConnection($("#conn-result")));

// ---- backtest ------------------------------------------------------------------------------------
const bt = { chart: null, series: null, timer: null };
async function pollBacktest() {
  let j;
  try { j = await api("GET", "/api/backtest"); } catch (e) { fail(e); return; }
  const bar = $("#bt-progress");
  bar.hidden = j.state !== "running";
  bar.value = j.progress || 0;
  $("#btn-backtest").disabled = j.state === "running";
  $("#bt-status").textContent = j.state === "running" ? t("{done} · {trades} trades so far", { done: pct(j.progress || 0), trades: j.trades })
    : j.state === "error" ? t("Failed: {error}", { error: j.error }) : j.state === "done" ? t("Done ({preset} settings, data {data}) in {seconds} s: the engine ran on {steps} of {total} steps", { preset: j.preset, data: j.data, seconds: fmt(j.report.seconds, 2), steps: j.report.engine_steps, total: j.report.candles_per_symbol })
      + (j.report.engine_steps < j.report.candles_per_symbol ? t(", the others had nothing to do.") : " " + t("(AI mode and a capped universe run it on every step).")) : "";
  $("#bt-status").className = j.state === "error" ? "error" : "muted";
  if (j.state === "running") { bt.timer = setTimeout(pollBacktest, 700); return; }
  if (j.state === "done") { renderBacktest(j.report); hist.seen = null; }  // History's "last backtest" changed
}
async function pollDownload() {
  const j = await api("GET", "/api/data/download");
  if (j.state === "running") { $("#dl-status").textContent = `${pct(j.progress || 0)} · ${j.what || t("starting")}`; setTimeout(pollDownload, 700); return; }
  if (j.state === "error") { $("#dl-status").textContent = t("Download failed: {error}", { error: j.error }); $("#dl-status").className = "error"; return; }
  if (j.state === "done") {
    const rows = Object.entries(j.report || {}).map(([sym, r]) => t("{symbol}: {n} candles", { symbol: sym, n: r.written.klines }) + (r.gaps.length ? ", " + t("{n} gap(s)", { n: r.gaps.length }) : ""));
    $("#dl-status").textContent = t("Downloaded into {folder}: {rows}. The backtest reads this folder.", { folder: j.folder, rows: rows.join("; ") });
    $("#dl-status").className = "pos";
  }
}

$("#btn-download").addEventListener("click", async () => {
  const symbols = $("#dl-symbols").value.split(",").map((x) => x.trim().toUpperCase()).filter(Boolean);
  try { await api("POST", "/api/data/download", { symbols, days: Number($("#dl-days").value || 30) }); $("#dl-status").className = "muted"; pollDownload(); }
  catch (e) { fail(e); }
});

// an amount of the backtest's account: cents of a dollar quote, satoshis of BTC (the sample
// pairs are quoted in BTC), never "-0"
function money(x, quote) {
  return quote.startsWith("USD") ? `${cents(x)} ${quote}` : `${fmt(Math.abs(x) < 5e-9 ? 0 : x, 8)} ${quote}`;
}
function renderBacktest(r) {
  const s = r.summary, q = r.quote || "USDT";
  const cards = [["Trades", s.trades], ["Return", pct(s.total_return)], ["Win rate", pct(s.win_rate)],
    ["Profit factor", s.profit_factor === null ? "–" : fmt(s.profit_factor, 2)], ["Expectancy", s.expectancy_r === null ? "–" : fmt(s.expectancy_r, 2) + " R"],
    ["Max drawdown", pct(s.max_drawdown_pct)], ["Sharpe", s.sharpe === null ? "–" : fmt(s.sharpe, 2)], ["Sortino", s.sortino === null ? "–" : fmt(s.sortino, 2)],
    ["Exposure", pct(s.exposure)], ["Fees", money(s.fees, q)]];
  $("#bt-cards").replaceChildren(...cards.map(([k, v]) => el("div", { class: "card", "data-testid": "bt-card" }, el("small", {}, t(k)), el("b", {}, String(v)))));
  if (window.LightweightCharts) {
    if (!bt.chart) {
      bt.chart = makeChart($("#bt-chart"), 220, WHOLE_CURVE);
      bt.series = bt.chart.addSeries(LightweightCharts.LineSeries, { lineWidth: 2 });
    }
    const pts = []; let last = -1;
    for (const [t, v] of r.equity_curve) { const x = Math.floor(t / 1000); if (x > last) { pts.push({ time: x, value: v }); last = x; } }
    bt.series.setData(pts); bt.chart.timeScale().fitContent();
    // once more after the layout settled (the price labels take their width only after drawing)
    requestAnimationFrame(() => requestAnimationFrame(() => { bt.chart.timeScale().fitContent(); $("#bt-chart").dataset.points = pts.length; }));
  }
  $("#bt-symbols-table tbody").replaceChildren(...Object.entries(r.per_symbol).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v.trades), el("td", {}, pct(v.win_rate)), el("td", { class: v.total_pnl >= 0 ? "pos" : "neg" }, money(v.total_pnl, q)))));
  $("#bt-skips tbody").replaceChildren(...Object.entries(r.skipped_signals).map(([k, v]) => el("tr", {}, el("td", { title: k }, t(v.label)), el("td", {}, v.count), el("td", {}, t(v.why)))));
}
$("#btn-backtest").addEventListener("click", async () => {
  const body = { preset: $("#bt-preset").value || null };
  const syms = $("#bt-symbols").value.split(",").map((x) => x.trim().toUpperCase()).filter(Boolean);
  if (syms.length) body.symbols = syms;
  if ($("#bt-days").value) body.days = Number($("#bt-days").value);
  try { await api("POST", "/api/backtest", body); clearTimeout(bt.timer); pollBacktest(); }
  catch (e) { fail(e); }
});

// ---- optimise ----------------------------------------------------------------------------------
const opt = { timer: null };
async function pollOptimise() {
  let j;
  try { j = await api("GET", "/api/optimize"); } catch (e) { fail(e); return; }
  const running = j.state === "running" || j.state === "stopping";
  $("#btn-optimise").disabled = running; $("#btn-optimise-stop").hidden = !running;
  const p = j.progress || {};
  $("#opt-progress").hidden = !running; $("#opt-progress").value = p.total ? p.done / p.total : 0;
  const eta = p.eta_s == null ? "" : " · " + t("about {age} left", { age: age(Math.round(p.eta_s)) });
  $("#opt-status").className = j.state === "error" ? "error" : "muted";
  $("#opt-status").textContent = j.state === "idle" ? "" : j.state === "error" ? t("Failed: {error}", { error: j.error })
    : j.state === "stopped" ? t("Stopped after {n} trials: start the same search again to resume it.", { n: p.done || 0 })
    : j.state === "done" ? t("Done: {n} trials.", { n: p.done || 0 })
    : j.phase === "report" ? t("All {n} trials done; scoring the unseen windows and the neighbourhoods…", { n: p.done || 0 })
    : t(j.state === "stopping" ? "Stopping: trials {done} of {total} ({study}), best so far {best}" : "Running: trials {done} of {total} ({study}), best so far {best}",
      { done: p.done || 0, total: p.total || "?", study: p.study || t("starting"), best: p.best == null ? "–" : fmt(p.best, 3) }) + eta;
  if (running) { clearTimeout(opt.timer); opt.timer = setTimeout(pollOptimise, 1000); }
  renderOptimise(j.report);
}
function renderOptimise(r) {
  $("#opt-result").hidden = !r; if (!r) return;
  $("#opt-warnings").replaceChildren(...(r.warnings_words || r.warnings).map((w) => el("li", {}, typeof w === "string" ? saidOr(null, w) : said(w))));
  $("#opt-folds-table tbody").replaceChildren(...r.folds.map((f) => {
    const i = f.in_sample || {}, o = f.out_of_sample || {};
    return el("tr", {}, el("td", {}, f.name === "final" ? t("hold-out") : f.name.replace(/^fold-(\d+)$/, (m, n) => t("fold {n}", { n }))), el("td", {}, `${f.trials} (${f.feasible})`),
      el("td", {}, fmt(i.value, 3)), el("td", { class: (o.value ?? 0) > 0 ? "pos" : "neg" }, fmt(o.value, 3)),
      el("td", {}, `${i.trades ?? "–"} / ${o.trades ?? "–"}`), el("td", {}, saidOr(f.warning_words, f.warning)));
  }));
  const mc = r.monte_carlo || {};
  $("#opt-mc").textContent = mc.runs ? `${t(r.objective)}. ` + t("Out-of-sample trades reshuffled {runs} times: maximum drawdown {actual} as it happened, {p50} typical, {p95} in the worst 5 %.", { runs: mc.runs, actual: pct(mc.actual), p50: pct(mc.p50), p95: pct(mc.p95) }) : t(r.objective);
  $("#btn-opt-preview").disabled = !r.changes.length;
}
const shown = (v) => typeof v === "number" ? fmt(v, 4) : JSON.stringify(v);
function optimiseBody() {
  return { settings: [...document.querySelectorAll("input[name=opt-group]:checked")].map((x) => x.value),
    objective: $("#opt-objective").value, trials: Number($("#opt-trials").value), folds: Number($("#opt-folds").value),
    max_drawdown: Number($("#opt-dd").value) / 100, min_trades: Number($("#opt-min-trades").value), jobs: Number($("#opt-jobs").value) };
}
$("#btn-optimise").addEventListener("click", async () => {
  $("#opt-preview").hidden = true;
  try { await api("POST", "/api/optimize", optimiseBody()); pollOptimise(); } catch (e) { $("#opt-status").className = "error"; $("#opt-status").textContent = e.message; }
});
$("#btn-optimise-stop").addEventListener("click", async () => { try { await api("POST", "/api/optimize/stop"); pollOptimise(); } catch (e) { fail(e); } });
$("#btn-opt-preview").addEventListener("click", async () => {
  try {
    const pv = await api("GET", "/api/optimize/preset-preview");
    $("#opt-changes tbody").replaceChildren(...pv.changes.map((c) => el("tr", {}, el("td", {}, c.key), el("td", {}, shown(c.from)), el("td", {}, shown(c.to)))));
    $("#opt-preview").hidden = false;
  } catch (e) { fail(e); }
});
$("#btn-opt-save").addEventListener("click", async () => {
  try {
    const r = await api("POST", "/api/optimize/preset", { name: $("#opt-preset-name").value });
    $("#opt-save-status").className = "pos";
    $("#opt-save-status").textContent = t("Saved as “{name}”. Apply it under Settings → Presets when you want it; nothing changed yet.", { name: r.name });
    renderPresets();  // the Settings tab lists it at once
  } catch (e) { $("#opt-save-status").className = "error"; $("#opt-save-status").textContent = e.message; }
});

// ---- tabs and start-up -------------------------------------------------------------------------------
for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => {
    for (const x of document.querySelectorAll("#tabs button, .tab")) x.classList.remove("active");
    b.classList.add("active"); $(`#tab-${b.dataset.tab}`).classList.add("active");
    if (b.dataset.tab === "chart") drawCandles($("#chart-symbol").value);
    if (b.dataset.tab === "logs" && $("#log-autoscroll").checked) $("#log").scrollTop = $("#log").scrollHeight;  // a hidden box could not scroll
    if (b.dataset.tab === "backtest") { pollBacktest(); pollOptimise(); }
  });
}

(async function start() {
  try {
    const health = await (await fetch("/api/health")).json();
    await loadLanguage();
    const cfg = await loadConfig();
    if (cfg.first_run) showWizard();
    connectStream();
    await refresh();
    // a tab in the background does not poll; it catches up the moment it is shown again
    setInterval(() => { if (!document.hidden) refresh(); }, 2000);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    if (health.auth === false && location.hostname !== "127.0.0.1" && location.hostname !== "localhost") notice(t("This dashboard has no token."), "warn", "local-auth");
  } catch (e) { if (e.status !== 401) fail(e); }
})();
