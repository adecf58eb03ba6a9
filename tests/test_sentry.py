"""Sentry with the real SDK: events are captured by a transport of our own, never sent.

Each test starts the SDK through doorman and stops it afterwards, so that no
other test module reports anywhere.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from doorman import AuthMiddleware, SessionMiddleware, hookimpl
from doorman.config import load_settings
from doorman.exceptions import ConfigError
from doorman.integrations.sentry import (
    SentryMiddleware,
    scrub_event,
    setup_sentry,
    with_sentry,
)
from doorman.server.app import create_app
from doorman.testing import signed_in_client

from .conftest import SECRET
from .test_server import PASSWORD, Server, csrf_token, running, sign_in

pytestmark = pytest.mark.anyio

DSN = "https://public@127.0.0.1/1"
NEW_PASSWORD = "tr0ub4dor & 3 new-password"
QUERY_SECRET = "reset-token-in-the-query-1234"
OTHER_COOKIE = "django-sessionid-value-5678"


class CapturingTransport(Transport):
    """Keeps every envelope in memory: nothing leaves the process."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [e for e in (env.get_event() for env in self.envelopes) if e is not None]

    def raw(self) -> str:
        return b"".join(env.serialize() for env in self.envelopes).decode("utf-8")


@pytest.fixture
def captured() -> Iterator[CapturingTransport]:
    transport = CapturingTransport()
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


async def boom(request: Request) -> Response:
    form = await request.form()
    cookie = request.cookies.get("doorman_session")
    auth = request.headers.get("authorization", "")
    basic = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
    raise RuntimeError(f"failed with {form.get('password')} {cookie} {auth} {basic} {dict(form)}")


def user_app(server: Server, transport: CapturingTransport) -> Any:
    """An app of the user's behind doorman's middleware, sharing the server's sessions."""
    app = Starlette(routes=[Route("/boom", boom, methods=["POST"])])
    wrapped = SessionMiddleware(
        AuthMiddleware(app, server.doorman), secret=SECRET, store=server.store
    )
    return with_sentry(wrapped, {"dsn": DSN}, transport=transport)


class FailingPlugin:
    @hookimpl
    def actor_from_request(self) -> None:
        raise RuntimeError("a plugin of doorman failed")


def has_sentry(app: Any) -> bool:
    """Whether ``SentryMiddleware`` is one of the layers of ``app`` (an access log may wrap it)."""
    while app is not None:
        if isinstance(app, SentryMiddleware):
            return True
        app = getattr(app, "app", None)
    return False


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_an_error_is_reported_with_the_actor_id_and_without_secrets(
    tmp_path: Path, captured: CapturingTransport
) -> None:
    async with running(tmp_path) as server:
        alice = await server.doorman.create_user("alice", PASSWORD, email="alice@example.com")
        _, api_token = await server.doorman.tokens.create(alice)
        async with _client(server.app) as browser:
            assert (await sign_in(browser)).status_code in (302, 303)
            token = await csrf_token(browser)
            session_cookie = browser.cookies["doorman_session"]
        async with _client(user_app(server, captured)) as browser:
            browser.cookies.set("doorman_session", session_cookie)
            browser.cookies.set("sessionid", OTHER_COOKIE)
            response = await browser.post(
                f"/boom?token={QUERY_SECRET}&page=2",
                data={"password": PASSWORD, "new_password": NEW_PASSWORD, "csrftoken": token},
                headers={"authorization": f"Bearer {api_token}", "x-csrftoken": token},
            )
        assert response.status_code == 500

    [event] = captured.events()
    assert event["user"] == {"id": "alice"}  # the actor id, nothing else of the user
    [error] = event["exception"]["values"]
    assert error["type"] == "RuntimeError"
    assert "[Filtered]" in error["value"]
    raw = captured.raw()
    secrets = [PASSWORD, NEW_PASSWORD, api_token, session_cookie, OTHER_COOKIE, token]
    secrets += [QUERY_SECRET, *(quote_plus(s) for s in (PASSWORD, NEW_PASSWORD))]
    # The token's secret part: everything after "dmt_<id>_" (it may hold "_" itself).
    secrets += [api_token.split("_", 2)[2], "alice@example.com"]
    leaked = [secret for secret in secrets if secret in raw]
    assert leaked == []
    assert "page=2" in raw  # what is not secret stays, to be useful


async def test_an_anonymous_error_has_no_user(tmp_path: Path, captured: CapturingTransport) -> None:
    async with running(tmp_path) as server:
        async with _client(user_app(server, captured)) as browser:
            basic = base64.b64encode(f"mallory:{NEW_PASSWORD}".encode()).decode()
            response = await browser.post(
                "/boom", data={"password": PASSWORD}, headers={"authorization": f"Basic {basic}"}
            )
        assert response.status_code == 500  # HTTP Basic is off: mallory is not signed in
    [event] = captured.events()
    assert "user" not in event
    assert "mallory" in event["exception"]["values"][0]["value"]  # the app did put it there
    for secret in (PASSWORD, NEW_PASSWORD, basic):
        assert secret not in captured.raw()


async def test_an_error_in_doorman_outside_the_app_is_reported(
    tmp_path: Path, captured: CapturingTransport
) -> None:
    async with running(tmp_path, sentry={"dsn": DSN}) as server:
        server.doorman.plugins.register(FailingPlugin())
        app = create_app(server.settings, doorman=server.doorman, store=server.store)
        assert has_sentry(app)
        setup_sentry(server.settings.sentry, transport=captured)  # as create_app did, captured
        async with _client(app) as browser:
            response = await browser.get("/-/whoami", headers={"cookie": f"x={OTHER_COOKIE}"})
        assert response.status_code == 500
    [event] = captured.events()
    assert event["exception"]["values"][0]["value"] == "a plugin of doorman failed"
    assert OTHER_COOKIE not in captured.raw()


async def test_an_error_in_the_app_behind_doorman_protect_is_reported(
    tmp_path: Path, captured: CapturingTransport
) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError(f"the protected app failed for {scope['actor']['id']}")

    async with running(tmp_path, sentry={"dsn": DSN}) as server:
        await server.doorman.create_user("alice")
        settings, doorman, store = server.settings, server.doorman, server.store
        app = create_app(settings, doorman=doorman, store=store, protected=failing)
        setup_sentry(settings.sentry, transport=captured)  # as create_app did, captured
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with signed_in_client(app, "alice", transport=transport) as browser:
            cookie = browser.cookies["doorman_session"]
            assert (await browser.get("/reports")).status_code == 500
    [event] = captured.events()
    assert event["user"] == {"id": "alice"}
    assert event["exception"]["values"][0]["value"] == "the protected app failed for alice"
    assert cookie not in captured.raw()


async def test_the_setting_from_toml_and_the_environment_starts_the_sdk(tmp_path: Path) -> None:
    config = tmp_path / "doorman.toml"
    config.write_text('sentry = {dsn = {"$env" = "SENTRY_DSN"}, environment = "prod"}\n')
    settings = load_settings(
        config_file=config,
        environ={"SENTRY_DSN": DSN},
        overrides={"db": str(tmp_path / "d.db"), "secret": SECRET},
    )
    try:
        app = create_app(settings)
        assert has_sentry(app)
        options = sentry_sdk.get_client().options
        assert (options["dsn"], options["environment"]) == (DSN, "prod")
        assert not options.get("send_default_pii")
        assert options["include_local_variables"] is False
        assert options["before_send"] is scrub_event
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def test_without_the_setting_nothing_is_wrapped() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    assert with_sentry(app, {}) is app


@pytest.mark.parametrize(
    "options",
    [
        {"dsn": DSN, "send_default_pii": True},
        {"dsn": DSN, "include_local_variables": True},
        {"dsn": DSN, "data_collection": {"cookies": True}},
        {"dsn": DSN, "before_send": "x"},
        {"dsn": DSN, "no_such_option": 1},
    ],
)
def test_options_that_would_leak_or_do_not_exist_stop_start_up(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="sentry"):
        setup_sentry(options)


def test_scrub_event_filters_keys_and_secret_looking_text() -> None:
    token = "dmt_0123456789abcdef_" + "S" * 43
    event: Any = {
        "request": {
            "url": "https://app.example.com/x",
            "query_string": "next=/a&csrftoken=abc123&api_key=k-123",
            "headers": {"Cookie": "a=b", "Authorization": "Bearer xyz", "X-CSRFToken": "t"},
            "cookies": {"doorman_session": "signed"},
            "data": {"username": "alice", "new_password": "pw-1", "token": "t-2"},
        },
        "exception": {"values": [{"type": "E", "value": f"bad {token} at postgresql://u:pw@db/x"}]},
        "breadcrumbs": {
            "values": [{"message": "GET /cb?code=1&session_state=s-3 Bearer abcdefgh12"}]
        },
        "extra": {"repr": "{'password': 'hunter2', 'user': 'bob'}"},
    }
    scrubbed = scrub_event(event, {})
    text = repr(scrubbed)
    for secret in ("abc123", "k-123", "a=b", "xyz", "signed", "pw-1", "t-2", token, "u:pw"):
        assert secret not in text
    assert "s-3" not in text and "abcdefgh12" not in text and "hunter2" not in text
    assert scrubbed["request"]["data"]["username"] == "alice"
    assert "next=/a" in scrubbed["request"]["query_string"]
    assert "'user': 'bob'" in scrubbed["extra"]["repr"]


def test_security_log_lines_become_breadcrumbs_without_their_values(
    captured: CapturingTransport,
) -> None:
    setup_sentry({"dsn": DSN}, transport=captured)
    typed = "my-real-password-typed-as-username"
    with sentry_sdk.isolation_scope():
        logging.getLogger("doorman.security").warning("failed sign-in for %r from %s", typed, "x")
        logging.getLogger("doorman.sessions").warning("store slow: %s", "reason")
        sentry_sdk.capture_message("after a failed sign-in")
    [event] = captured.events()
    crumbs = [crumb.get("message") for crumb in event["breadcrumbs"]["values"]]
    assert "failed sign-in for %r from %s" in crumbs
    assert "store slow: reason" in crumbs
    assert typed not in captured.raw()
