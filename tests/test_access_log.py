"""doorman's access log: one line per request, without the query string."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# -- doorman serve's handler: the line without a record, written once per turn of the loop --


@pytest.fixture
def served_logger() -> Any:
    """A logger set up as ``uvicorn_log_config`` sets up ``doorman.access``, into a string."""
    import io

    from doorman.server.access_log import AccessLogHandler, LineFormatter

    logger = logging.getLogger("doorman.test-access")
    stream = io.StringIO()
    handler = AccessLogHandler(stream)
    handler.setFormatter(LineFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


async def test_served_lines_wait_for_the_end_of_the_turn_in_order(served_logger: Any) -> None:
    import asyncio

    logger, stream = served_logger
    async with client(AccessLogMiddleware(answer_teapot, logger)) as browser:
        await browser.get("/first?token=secret")
        await browser.get("/second")
    await asyncio.sleep(0)  # the turn ends: the lines are written
    first, second = stream.getvalue().splitlines()
    assert first.startswith('INFO      127.0.0.1 "GET /first HTTP/1.1" 418 ')
    assert second.startswith('INFO      127.0.0.1 "GET /second HTTP/1.1" 418 ')
    assert "secret" not in stream.getvalue()


async def test_a_served_line_is_the_line_a_record_makes(served_logger: Any) -> None:
    """With a filter on the logger, lines go as records again, through the same formatter."""
    import asyncio

    logger, stream = served_logger
    app = AccessLogMiddleware(answer_teapot, logger)
    async with client(app) as browser:
        await browser.get("/same")
        logger.addFilter(lambda record: True)
        try:
            await browser.get("/same")
        finally:
            logger.filters.clear()
    await asyncio.sleep(0)
    direct, recorded = (line.rsplit(" ", 1)[0] for line in stream.getvalue().splitlines())
    assert direct == recorded == 'INFO      127.0.0.1 "GET /same HTTP/1.1" 418'


def test_without_a_loop_a_served_line_is_written_at_once(served_logger: Any) -> None:
    logger, stream = served_logger
    logger.info("from the command line")
    assert stream.getvalue() == "INFO      from the command line\n"


_LINKS = [b"/-/password-reset/", b"/-/verify-email/", b"/-/invite/", b"/-/sign-in-link/"]
PATHS = st.one_of(
    st.binary(max_size=40),
    st.from_regex(rb"[\x21-\x7e]{0,40}", fullmatch=True),  # printable: the quick way out
    st.builds(
        lambda before, link, after: before + link + after,
        st.from_regex(rb"[\x21-\x7e]{0,8}", fullmatch=True),
        st.sampled_from(_LINKS),
        st.from_regex(rb"[\x21-\x7e]{0,20}", fullmatch=True),
    ),
)


@given(PATHS)
def test_any_path_prints_on_one_line_without_its_query(raw: bytes) -> None:
    from doorman.server.access_log import _escaped, _printable

    printed = _printable(raw)
    assert printed == _escaped(raw), "the quick way out prints what the escaping would"
    assert printed.isascii() and printed.isprintable()
    assert '"' not in printed.replace('\\"', "")
    assert printed == _printable(raw.split(b"?", 1)[0])
