"""The dashboard's FastAPI application and its command line."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from mraster import __version__
from mraster import settings as st
from mraster.dashboard.context import DashboardContext, make_context
from mraster.dashboard.i18n import languages
from mraster.dashboard.routes import (actions, ai, audit, auth, backtest, bot, config, data, drill,
                                      journal, optimize, setup, state, stream)
from mraster.dashboard.limits import BodyLimitMiddleware
from mraster.dashboard.routes.errors import schema_error_response
from mraster.dashboard.sessions import token_problem
from mraster.dashboard.security import SecurityMiddleware
from mraster.logs import setup_logging
from mraster.words import CATALOGUES

ROOT = Path(__file__).resolve().parents[2]
# a request is matched against the routers in this order: what every open page polls comes first
# (in the last places the matching took a third of each poll's time); no address belongs to two
# routes, so the order changes nothing else (tests/test_dashboard_api.py checks that)
ROUTERS = (state, bot, stream, auth, actions, ai, audit, backtest, config, data, drill, journal,
           optimize, setup)
log = logging.getLogger("mraster.dashboard")


def create_app(ctx: DashboardContext | None = None) -> FastAPI:
    """``ctx`` defaults to the files of the current folder; tests pass their own."""
    holder: dict[str, DashboardContext] = {}

    def context() -> DashboardContext:
        if "ctx" not in holder:
            holder["ctx"] = ctx or make_context()
        return holder["ctx"]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.ctx = context()
        app.state.ctx.supervisor.adopt_existing()
        yield
        optimize.stop_running(app.state.ctx)  # a search outlives no dashboard (it resumes)
        await app.state.ctx.supervisor.shutdown()

    app = FastAPI(title="MrAster dashboard", version=__version__, lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, schema_error_response)
    app.add_middleware(BodyLimitMiddleware)  # inner: only requests that passed security
    app.add_middleware(SecurityMiddleware, token=lambda: context().token,
                       sessions=lambda: context().sessions, throttle=lambda: context().throttle)
    # outermost: every answer over 1 KB is compressed (the state a page polls shrinks about
    # tenfold; the live log's event stream is never buffered for it)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    templates = Jinja2Templates(directory=str(ROOT / "templates"))
    app.mount("/static", VersionedStatic(directory=str(ROOT / "static")), name="static")
    for module in ROUTERS:
        app.include_router(module.router)

    app.openapi = lambda: truthful_openapi(app)
    offered = languages(CATALOGUES)

    @app.get("/api/health", tags=["health"])
    def health() -> dict:
        return {"ok": True, "version": __version__, "auth": bool(context().token)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request):
        return templates.TemplateResponse(request, "index.html",
                                          {"version": __version__, "languages": offered,
                                           "confirm_max": actions.CONFIRM_MAX})

    return app


class VersionedStatic(StaticFiles):
    """The page asks for its files with ``?v=<version>``: such a file never changes, so the
    browser keeps it (an upgrade changes the address); anything else is revalidated (ETag)."""

    async def get_response(self, path: str, scope) -> Response:
        resp = await super().get_response(path, scope)
        versioned = b"v=" in scope.get("query_string", b"")
        resp.headers["Cache-Control"] = ("public, max-age=31536000, immutable" if versioned
                                         else "no-cache")
        return resp


ERROR_STATUSES = {
    "400": "malformed request (Host header, body)", "401": "the dashboard's token is needed",
    "403": "refused: cross-site request, or not from this machine without a token",
    "404": "no such item", "409": "conflicts with what is running (the bot, a backtest)",
    "413": "request body over 1 MB", "422": "a value is not allowed; the detail names it",
    "429": "too many wrong tokens from this address"}


def truthful_openapi(app: FastAPI) -> dict:
    """The schema FastAPI generates, plus the answers every route can really give: the
    security and body-limit middlewares answer 400/401/403/413/429 before any route runs, and
    the routes' own refusals carry ``{"detail": ...}`` with a sentence or a list of fields."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object", "properties": {"detail": {}}, "required": ["detail"]}
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path in schema.get("paths", {}).values():
        for op in path.values():
            responses = op.setdefault("responses", {})
            for code, text in ERROR_STATUSES.items():
                responses[code] = {"description": responses.get(code, {}).get("description", text),
                                   "content": ref}
    app.openapi_schema = schema
    return schema


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# the settings the dashboard's own start reads
DASHBOARD_SETTINGS = frozenset({"ASTER_DASHBOARD_HOST", "ASTER_DASHBOARD_PORT",
                                "ASTER_DASHBOARD_TOKEN", "ASTER_LOGLEVEL"})


def main(argv: list[str]) -> int:
    # one context for the settings read here and the app served below: reading the settings
    # imports an original-format dashboard_config.json, and its summary lives in that context
    # (the page never showed it when the app made a context of its own, finding the file
    # imported already)
    ctx = make_context()
    # a bad saved value of the bot's (a leverage edited by hand into dashboard_config.json) is
    # the page's to show and mend — it lists every bad field, in the reader's language, and the
    # bot refuses to start on it; a bad value of the dashboard's own settings, or one in the
    # environment or .env (which the page cannot mend), stops the dashboard
    settings, errors = ctx.settings_lenient()
    fatal = [e for e in errors
             if e.key in DASHBOARD_SETTINGS or e.source in (".env", "environment")]
    if fatal:
        print(f"dashboard_server: invalid setting: {st.SettingsErrors(fatal)}")
        return 2
    parser = argparse.ArgumentParser(description="MrAster dashboard")
    parser.add_argument("--host", default=settings["ASTER_DASHBOARD_HOST"])
    parser.add_argument("--port", type=int, default=settings["ASTER_DASHBOARD_PORT"])
    args = parser.parse_args(argv)
    setup_logging(settings["ASTER_LOGLEVEL"], secrets=settings.secrets())
    if not is_loopback(args.host) and not settings["ASTER_DASHBOARD_TOKEN"]:
        print(f"dashboard_server: refusing to listen on {args.host}: binding a non-loopback "
              "address needs ASTER_DASHBOARD_TOKEN, or anyone on the network could trade your "
              "account. Set a token or use --host 127.0.0.1.")
        return 2
    weak = token_problem(settings["ASTER_DASHBOARD_TOKEN"], is_loopback(args.host))
    if weak:
        print(f"dashboard_server: refusing to listen on {args.host}: {weak}")
        return 2
    import uvicorn

    log.info("MrAster dashboard on http://%s:%s (%s mode)", args.host, args.port,
             "paper" if settings["ASTER_PAPER"] else "LIVE")
    # open live-log streams never end by themselves: give them 2 s, then close them, so Ctrl-C
    # (and the supervisor's stop of the bot) happen promptly
    # one access-log line per request would flood the console (every open page polls every 2 s);
    # ASTER_LOGLEVEL=debug turns them on
    uvicorn.run(create_app(ctx), host=args.host, port=args.port, log_config=None,
                timeout_graceful_shutdown=2, access_log=settings["ASTER_LOGLEVEL"] == "debug")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(os.sys.argv[1:]))
