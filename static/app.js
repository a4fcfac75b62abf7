const app = document.getElementById("app");
fetch("/api/health").then(r => r.json()).then(h => { app.textContent = `Dashboard ready (v${h.version}).`; });
