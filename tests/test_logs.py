from __future__ import annotations

import io
import logging

from mraster.logs import mask, register_secrets, setup_logging


def test_registered_secret_is_masked_in_any_logger():
    buf = io.StringIO()
    setup_logging("info", stream=buf, secrets=["my-very-secret-api-key-123"])
    logging.getLogger("some.library").warning("using key my-very-secret-api-key-123 now")
    try:
        raise RuntimeError("failed with my-very-secret-api-key-123")
    except RuntimeError:
        logging.getLogger("httpx").exception("boom")
    out = buf.getvalue()
    assert "my-very-secret-api-key-123" not in out
    assert out.count("****") >= 2


def test_secret_shapes_are_masked_without_registration():
    line = ("GET /fapi/v1/order?symbol=BTCUSDT&timestamp=1&signature=3c661234138461fcc7a7d8746c65 "
            "X-MBX-APIKEY: dbefbc809e3e83c283a984c3a1459732 Authorization: Bearer sk-abcdefghijklmnop "
            "key 0x" + "ab" * 32 + " api_key=hunter2hunter2")
    out = mask(line)
    for leaked in ("3c661234138461fcc7a7d8746c65", "dbefbc809e3e83c283a984c3a1459732",
                   "sk-abcdefghijklmnop", "ab" * 32, "hunter2hunter2"):
        assert leaked not in out
    assert "symbol=BTCUSDT" in out


def test_register_ignores_empty_values():
    register_secrets(["", None or ""])
    assert mask("plain text") == "plain text"
