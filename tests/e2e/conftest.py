"""Headless Debian Chromium driven by Playwright, against the real dashboard process."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import ROOT
from dashboard_helpers import wait_for
from mraster.sim.serve import free_port

ARTIFACTS = Path(os.environ.get("MRASTER_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is needed for the browser tests: apt-get install chromium " \
                 "(scripts/test.sh installs it when it can)"
    return path


@pytest.fixture(scope="module")
def browser():
    """Module scope: Playwright's sync API owns the thread's event loop while it runs, so it must
    be gone before other tests call asyncio.run()."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Server:
    """``python dashboard_server.py`` in a temporary folder, as a user starts it."""

    def __init__(self, folder: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
        self.log = folder / "dashboard.log"  # a file, not a pipe nobody reads (it would fill up)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "dashboard_server.py"), "--port", str(self.port)],
                cwd=folder, env={**base, **env}, stdout=out, stderr=subprocess.STDOUT, text=True)

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, timeout=60, what="the dashboard")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def dashboard(tmp_path):
    """Start the dashboard process with these settings; it is stopped after the test."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        servers.append(Server(tmp_path, **env))
        return servers[-1]
    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def page_factory(browser, request):
    pages = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def make(width: int = 1400, height: int = 900, **options):
        ctx = browser.new_context(viewport={"width": width, "height": height}, **options)
        page = ctx.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        pages.append((ctx, page))
        return page

    yield make
    for i, (ctx, page) in enumerate(pages):
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}-final.png"), full_page=True)
        ctx.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
