from __future__ import annotations

import os
import subprocess
import sys

import httpx

from conftest import ROOT
from mraster.sim.serve import ThreadedServer


def test_dashboard_serves_page_and_health_on_loopback():
    from dashboard_server import app

    with ThreadedServer(app) as srv:
        assert httpx.get(f"{srv.url}/api/health").json()["ok"] is True
        page = httpx.get(f"{srv.url}/")
        assert page.status_code == 200 and "MrAster" in page.text
        assert httpx.get(f"{srv.url}/openapi.json").status_code == 200


def test_non_loopback_bind_without_token_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    p = subprocess.run([sys.executable, str(ROOT / "dashboard_server.py"), "--host", "0.0.0.0"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "ASTER_DASHBOARD_TOKEN" in p.stdout
