"""The published API schema tells the truth: schemathesis generates requests from
``/openapi.json`` and checks every answer of the real dashboard (over HTTP on 127.0.0.1, with the
token and the CSRF header) against it: no 5xx, no undocumented status, no body off its schema.
Bounded to a few examples per operation to keep the suite short."""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (response_schema_conformance,
                                                status_code_conformance)

from dashboard_helpers import CSRF, Dashboard, dashboard_environ

TOKEN = "schema-test-token-0123456789"
HEADERS = {**CSRF, "Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def test_every_answer_matches_the_published_schema(tmp_path):
    env = dashboard_environ(tmp_path, ASTER_OFFLINE="true", ASTER_DASHBOARD_TOKEN=TOKEN,
                            ASTER_SCAN_INTERVAL_SECONDS="1")
    with Dashboard(tmp_path, env) as d:
        schema = schemathesis.openapi.from_url(d.url + "/openapi.json", headers=HEADERS)
        tested = 0
        for result in schema.get_all_operations():
            op = result.ok()

            @given(case=op.as_strategy())
            @settings(max_examples=6, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(base_url=d.url, headers=HEADERS, checks=CHECKS)
            check()
            tested += 1
        assert tested >= 25  # every route of the API, not a handful
