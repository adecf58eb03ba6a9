"""doorman's access log: one line per request, without the query string."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest

from doorman._types import Receive, Scope, Send, send_text
from doorman.server.access_log import AccessLogMiddleware, uvicorn_log_config

from .helpers import client

pytestmark = pytest.mark.anyio


async def answer_teapot(scope: Scope, receive: Receive, send: Send) -> None:
    await send_text(send, 418, "short and stout\n")


async def fail(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("the app broke")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "doorman.access"]


async def test_a_line_names_client_method_path_status_and_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "doorman.access")
    async with client(AccessLogMiddleware(answer_teapot)) as browser:
        await browser.get("/-/setup?token=the-one-time-secret")

    [line] = lines(caplog)
    assert line.startswith('127.0.0.1 "GET /-/setup HTTP/1.1" 418 ')
    assert line.endswith("ms")
    assert "the-one-time-secret" not in caplog.text


async def test_control_characters_in_the_path_cannot_forge_a_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "doorman.access")
    app = AccessLogMiddleware(answer_teapot)
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": '/a\n127.0.0.1 "GET /admin HTTP/1.1" 200',
        "raw_path": b'/a\n127.0.0.1 "GET /admin HTTP/1.1" 200',
        "query_string": b"",
        "headers": [],
        "client": ("203.0.113.5", 1),
    }

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    await app(scope, receive, send)
    [line] = lines(caplog)
    assert "\n" not in line
    assert line.startswith('203.0.113.5 "GET /a\\n127.0.0.1 \\"GET /admin')


async def test_an_app_that_fails_is_logged_as_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "doorman.access")
    async with client(AccessLogMiddleware(fail)) as browser:
        with pytest.raises(RuntimeError):
            await browser.get("/boom")
    [line] = lines(caplog)
    assert '"GET /boom HTTP/1.1" 500 ' in line


async def test_nothing_is_logged_when_the_logger_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "doorman.access")
    async with client(AccessLogMiddleware(answer_teapot)) as browser:
        assert (await browser.get("/")).status_code == 418
    assert lines(caplog) == []


@pytest.mark.e2e
def test_uvicorns_log_config_routes_doormans_loggers() -> None:
    on, off = uvicorn_log_config(True), uvicorn_log_config(False)
    assert on["loggers"]["doorman.access"]["level"] == "INFO"
    assert off["loggers"]["doorman.access"]["level"] == "WARNING"
    assert on["loggers"]["doorman"]["level"] == "INFO"
    # The config must be one that logging accepts, as uvicorn hands it over unchanged.
    check = f"import logging.config; logging.config.dictConfig({on!r})"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
