"""What every dashboard route needs: the files, the effective settings, the supervisor, the log.

Routes receive it through FastAPI's dependency injection (``Depends(get_ctx)``), so tests build an
app over temporary files without touching the user's.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fastapi import Request

from mraster import settings as st
from mraster.saved_presets import KEY as SAVED_KEY, settings_of
from mraster.settings_legacy import migrate_config
from mraster.dashboard.hub import LogHub
from mraster.dashboard.sessions import LoginThrottle, SessionStore
from mraster.exchange import auth
from mraster.dashboard.supervisor import BotSupervisor, Launch, Policy
from mraster.files import config_document, keep_notice, state_document
from mraster.store import JsonDocument, set_aside
from mraster.words import Words, notice, said, words

# names the bot owns in aster_state.json; the dashboard writes only "commands", "ui" and
# "dashboard_alerts", each under the file lock, so neither side loses the other's writes
DASHBOARD_KEYS = ("commands", "ui", "dashboard_alerts")


@dataclass
class DashboardContext:
    config_path: Path
    env_file: Path
    environ: Mapping[str, str]
    hub: LogHub = field(default_factory=LogHub)
    supervisor: BotSupervisor | None = None
    token: str = ""  # ASTER_DASHBOARD_TOKEN as it was when the dashboard started
    backtest_job: Any = None  # the dashboard's one backtest run (routes/backtest.py)
    drill_job: Any = None  # the dashboard's one fire drill (routes/drill.py)
    download_job: Any = None  # the dashboard's one history download (routes/data.py)
    optimize_run: Any = None  # the dashboard's one optimisation (routes/optimize.py)
    import_notes: list = field(default_factory=list)  # an original config's import summary
    _imported: bool = False
    sessions: SessionStore = field(default_factory=SessionStore)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    _memo: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def cached(self, name: str, version: Any, compute):
        """Recompute only when the files behind it changed: many pages poll every 2 s."""
        hit = self._memo.get(name)
        if hit is None or hit[0] != version:
            hit = (version, compute())
            self._memo[name] = hit
        return hit[1]

    # -- settings ------------------------------------------------------------------------------
    @property
    def config_doc(self) -> JsonDocument:
        """One document per path, as the state's: making one builds its file lock and sweeps
        the folder for temp files a killed writer left (``store.sweep_stale_temps``)."""
        path = self.config_path
        return self.cached("config_doc", path, lambda: config_document(path))

    def read_config(self) -> dict[str, Any]:
        if not self._imported:  # an original-format file is imported once, with a summary
            self._imported = True
            self.import_notes = migrate_config(self.config_path)
        return settings_of(self.config_doc.read())

    def saved_presets(self) -> dict[str, Any]:
        """The user's saved presets (``mraster.saved_presets``), by name."""
        saved = self.config_doc.read().get(SAVED_KEY)
        return dict(saved) if isinstance(saved, dict) else {}

    def settings(self, config: Mapping[str, Any] | None = None) -> st.Settings:
        """Effective settings (raises SettingsErrors when a layer holds a bad value)."""
        return st.load(origin="dashboard", environ=self.environ, env_file=self.env_file,
                       config=self.read_config() if config is None else config)

    def settings_lenient(self) -> tuple[st.Settings, list[st.SettingError]]:
        """Settings for showing the page even when the saved configuration is broken: its bad
        values are left out (then the whole layer, when that is not enough) and their errors
        are returned for the editor to show."""
        return self.cached("settings", (_stamp(self.config_path), _stamp(self.env_file)),
                            self._settings_lenient)

    def _settings_lenient(self) -> tuple[st.Settings, list[st.SettingError]]:
        config = self.read_config()  # (read once: the file may be large)
        try:
            return self.settings(config), []
        except st.SettingsErrors as exc:
            bad = {e.key for e in exc.errors}
            try:  # the saved values but the bad ones: one field edited by hand wrongly must not
                # show every other saved value (the dashboard's own port too) as its default
                return self.settings(config={k: v for k, v in config.items()
                                             if k not in bad}), exc.errors
            except st.SettingsErrors:
                pass
            try:
                return self.settings(config={}), exc.errors
            except st.SettingsErrors:
                return st.load(origin="dashboard", environ={}, env_file=Path("/nonexistent"),
                               config={}), exc.errors

    def bot_files(self) -> tuple[str, str]:
        s, _ = self.settings_lenient()
        return s["ASTER_STATE_FILE"], s["ASTER_EVENTS_FILE"]

    def state_doc(self) -> JsonDocument:
        """One document object per state path: making one builds a file lock, which cost a
        fifth of every poll of the page (the lock is per thread, so sharing it is safe)."""
        path = self.bot_files()[0]
        return self.cached("state_doc", path, lambda: state_document(path))

    def read_state(self) -> tuple[dict[str, Any], Any]:
        """The state file and a version stamp; parsed again only after it was replaced (the bot
        writes it atomically, once per cycle). Callers must not modify the returned dict."""
        doc = self.state_doc()
        version = _stamp(doc.path)
        return self.cached("state", version, doc.peek), version

    # -- bot launch ----------------------------------------------------------------------------
    def launch(self) -> Launch:
        """The bot's environment: the validated settings, exactly as the dashboard sees them."""
        s = self.settings()
        if not s["ASTER_PAPER"] and auth.host_problem(s):
            # the bot sees every setting as its environment: the host check happens here
            raise st.SettingsErrors([st.SettingError("ASTER_EXCHANGE_BASE", s["ASTER_EXCHANGE_BASE"],
                                                     auth.host_problem(s))])
        env = {k: v for k, v in os.environ.items() if k not in st.BY_NAME}
        env.update(s.to_env())
        env.update(ASTER_ORIGIN="dashboard", PYTHONUNBUFFERED="1",
                   ASTER_CONFIG_FILE=str(self.config_path))
        return Launch(env=env, state_file=s["ASTER_STATE_FILE"], events_file=s["ASTER_EVENTS_FILE"],
                      paper=s["ASTER_PAPER"])

    def file_alerts(self) -> list[dict[str, Any]]:
        """A notice for every file of the user's that could not be read and was moved aside
        (state, configuration, bracket queue), derived from the files themselves, so a corrupt
        file met by the bot or by the dashboard shows up alike. Looked for again only when a
        folder holding one of them or the .env file changed (every page polls this)."""
        s, _ = self.settings_lenient()
        paths = (s["ASTER_STATE_FILE"], self.config_path, s["ASTER_BRACKETS_QUEUE_FILE"])
        key = (paths, tuple(_stamp(Path(p).parent) for p in paths), _stamp(self.env_file),
               _mode(self.env_file))
        return self.cached("file_alerts", key, lambda: self._file_alerts(paths))

    def _file_alerts(self, paths: tuple) -> list[dict[str, Any]]:
        out = []
        for path in paths:
            for aside in set_aside(path):
                out.append({"time": int(aside.stat().st_mtime * 1000), "level": "error",
                            "source": "dashboard",
                            **said(words("{file} could not be read and was moved to {aside}; "
                                         "defaults were used from then on. Check that file and "
                                         "restore what you need, then dismiss this.",
                                         file=Path(path).name, aside=aside.name))})
        exposed = exposed_secrets(self.env_file)
        if exposed:
            out.append({"time": int(self.env_file.stat().st_mtime * 1000), "level": "warning",
                        "source": "dashboard",
                        **said(words("{file} holds {names} and other users of this computer can "
                                     "read it: run chmod 600 {file}", file=str(self.env_file),
                                     names=", ".join(exposed)))})
        return out

    def add_alert(self, level: str, message: str | Words) -> None:
        """A notice raised by the dashboard itself (crash loop...): kept until dismissed."""
        keep_notice(self.state_doc(), "dashboard_alerts", notice(level, message,
                                                                  source="dashboard"))


def exposed_secrets(env_file: Path) -> list[str]:
    """The secret settings a .env file readable by group or others holds (names only)."""
    try:
        if not env_file.stat().st_mode & 0o044:
            return []
    except OSError:
        return []
    return sorted(k for k, v in st.read_env_file(env_file).items() if k in st.SECRET_NAMES and v)


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except OSError:
        return None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        s = path.stat()
        return s.st_ino, s.st_mtime_ns, s.st_size  # atomic writes make a new inode
    except OSError:
        return None


def alert_id(alert: Mapping[str, Any]) -> str:
    digest = hashlib.sha1(str(alert.get("message", "")).encode()).hexdigest()[:8]
    return f"{alert.get('time', 0)}-{digest}"


def make_context(environ: Mapping[str, str] | None = None, *, cwd: Path | None = None,
                 policy: Policy | None = None, command: tuple[str, ...] | None = None
                 ) -> DashboardContext:
    environ = os.environ if environ is None else environ
    base = cwd or Path.cwd()
    config_path = Path(environ.get("ASTER_CONFIG_FILE", "dashboard_config.json"))
    ctx = DashboardContext(config_path=config_path if config_path.is_absolute() else base / config_path,
                           env_file=base / ".env", environ=environ)
    ctx.token = ctx.settings_lenient()[0]["ASTER_DASHBOARD_TOKEN"]
    kw = {"command": command} if command else {}
    ctx.supervisor = BotSupervisor(ctx.hub, ctx.launch, ctx.bot_files, policy=policy,
                                   alert=ctx.add_alert, **kw)
    return ctx


async def get_ctx(request: Request) -> DashboardContext:
    """Async on purpose: a sync dependency would cost every request a thread-pool hop."""
    return request.app.state.ctx
