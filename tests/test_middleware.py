"""SessionMiddleware: the cookie it writes, when it writes it, and what it refuses."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from doorman import ConfigError, CookieStore, MemoryStore, SessionMiddleware, get_session
from doorman._types import Message, Receive, Scope, Send
from doorman.stores import SessionStore
from doorman.testing import session_probe_app

from .conftest import SECRET
from .helpers import (
    COOKIE,
    client,
    json_app,
    only_set_cookie,
    parse_set_cookie,
    session_signer,
    vary,
)

OTHER_SECRET = "other-secret-" + "z" * 32


def probe(**options: Any) -> SessionMiddleware:
    options.setdefault("secret", SECRET)
    return SessionMiddleware(session_probe_app, **options)


async def untouched_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Never looks at the session."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def stores() -> list[Any]:
    return [pytest.param(CookieStore, id="cookie"), pytest.param(MemoryStore, id="memory")]


# -- the cookie's attributes --------------------------------------------------


@pytest.mark.anyio
async def test_default_cookie_attributes_exactly() -> None:
    async with client(probe()) as http:
        response = await http.get("/set?user=alice")
    name, value, attributes = only_set_cookie(response)
    assert name == "doorman_session"
    assert value
    assert attributes == {"max-age": "1209600", "path": "/", "httponly": "", "samesite": "Lax"}
    spelled = response.headers["set-cookie"].split("; ")[1:]  # as sent, in any order
    assert sorted(spelled) == ["HttpOnly", "Max-Age=1209600", "Path=/", "SameSite=Lax"]


@pytest.mark.anyio
async def test_https_request_gets_secure() -> None:
    async with client(probe(), base_url="https://testserver") as http:
        response = await http.get("/set?user=alice")
        assert (await http.get("/get")).json() == {"user": "alice"}
    _, _, attributes = only_set_cookie(response)
    assert attributes == {
        "max-age": "1209600",
        "path": "/",
        "httponly": "",
        "samesite": "Lax",
        "secure": "",
    }


@pytest.mark.anyio
async def test_https_only_gets_secure_on_plain_http() -> None:
    async with client(probe(https_only=True)) as http:
        response = await http.get("/set?user=alice")
    assert "secure" in only_set_cookie(response)[2]


@pytest.mark.anyio
async def test_same_site_none_forces_secure() -> None:
    async with client(probe(same_site="none")) as http:
        response = await http.get("/set?user=alice")
    attributes = only_set_cookie(response)[2]
    assert attributes["samesite"] == "None"
    assert "secure" in attributes


@pytest.mark.anyio
async def test_partitioned_cookie_is_secure() -> None:
    async with client(probe(partitioned=True)) as http:
        response = await http.get("/set?user=alice")
    attributes = only_set_cookie(response)[2]
    assert "partitioned" in attributes
    assert "secure" in attributes


@pytest.mark.anyio
async def test_same_site_is_read_case_insensitively_like_starlette() -> None:
    async with client(probe(same_site="Strict")) as http:
        response = await http.get("/set?user=alice")
    assert only_set_cookie(response)[2]["samesite"] == "Strict"


@pytest.mark.anyio
async def test_custom_attributes() -> None:
    def handler(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/app/set":
            session["user"] = "alice"
        return dict(session)

    app = SessionMiddleware(
        json_app(handler),
        secret=SECRET,
        session_cookie="sid",
        max_age=3600,
        path="/app",
        same_site="strict",
        domain="example.com",
    )
    async with client(app, base_url="http://www.example.com") as http:
        response = await http.get("/app/set")
        assert (await http.get("/app/get")).json() == {"user": "alice"}
        assert (await http.get("/elsewhere")).json() == {}  # Path=/app keeps it there
    name, _, attributes = only_set_cookie(response)
    assert name == "sid"
    assert attributes == {
        "max-age": "3600",
        "path": "/app",
        "httponly": "",
        "samesite": "Strict",
        "domain": "example.com",
    }


@pytest.mark.anyio
async def test_max_age_none_makes_a_browser_session_cookie() -> None:
    async with client(probe(max_age=None)) as http:
        response = await http.get("/set?user=alice")
        assert (await http.get("/get")).json() == {"user": "alice"}
    attributes = only_set_cookie(response)[2]
    assert "max-age" not in attributes
    assert "expires" not in attributes


# -- configuration errors -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"session_cookie": "bad name"}, "session_cookie"),
        ({"session_cookie": "a;b"}, "session_cookie"),
        ({"session_cookie": "a=b"}, "session_cookie"),
        ({"session_cookie": ""}, "session_cookie"),
        ({"same_site": "lenient"}, "same_site"),
        ({"same_site": None}, "same_site"),
        ({"max_age": 0}, "max_age"),
        ({"max_age": -1}, "max_age"),
        ({"max_age": 1.5}, "max_age"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"absolute_timeout": -5}, "absolute_timeout"),
        ({"path": "app"}, "path"),
        ({"path": "/a; b"}, "path"),
        ({"domain": ""}, "domain"),
        ({"domain": "a.com; Secure"}, "domain"),
        ({"secret": "short"}, "32"),
        ({"secret": []}, "no secret"),
        ({"secret": None}, "exactly one"),
        ({"secret_key": SECRET}, "exactly one"),
    ],
)
def test_bad_configuration_fails_at_construction(options: dict[str, Any], fragment: str) -> None:
    options = {"secret": SECRET, **options}
    if options["secret"] is None:
        del options["secret"]
    with pytest.raises(ConfigError, match=fragment):
        SessionMiddleware(session_probe_app, **options)


def test_no_secret_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="secret"):
        SessionMiddleware(session_probe_app)


# -- writing only on change ---------------------------------------------------


@pytest.mark.anyio
async def test_cookie_is_written_only_when_the_session_changed() -> None:
    async with client(probe()) as http:
        first = await http.get("/set?user=alice")
        assert first.headers.get_list("set-cookie")
        read = await http.get("/get")
        assert read.json() == {"user": "alice"}
        assert read.headers.get_list("set-cookie") == []
        assert vary(read) == ["cookie"]
        changed = await http.get("/set?user=bob")
        assert changed.headers.get_list("set-cookie")


@pytest.mark.anyio
@pytest.mark.parametrize("store", stores())
async def test_untouched_session_sends_no_cookie_and_no_vary(store: type[SessionStore]) -> None:
    shared = store()
    async with client(probe(store=shared)) as http:
        await http.get("/set?user=alice")
        assert http.cookies[COOKIE]
    async with client(SessionMiddleware(untouched_app, secret=SECRET, store=shared)) as http:
        without_cookie = await http.get("/")
        http.cookies[COOKIE] = "garbage"
        with_cookie = await http.get("/")
    for response in (without_cookie, with_cookie):
        assert response.headers.get_list("set-cookie") == []
        assert vary(response) == []


@pytest.mark.anyio
async def test_reading_an_empty_session_sends_vary_but_no_cookie() -> None:
    async with client(probe()) as http:
        response = await http.get("/get")
    assert response.json() == {}
    assert vary(response) == ["cookie"]
    assert response.headers.get_list("set-cookie") == []


@pytest.mark.anyio
async def test_vary_is_added_to_the_apps_own() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        get_session(scope).get("user")
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"vary", b"Accept")]}
        )
        await send({"type": "http.response.body", "body": b""})

    async with client(SessionMiddleware(app, secret=SECRET)) as http:
        response = await http.get("/")
    assert sorted(vary(response)) == ["accept", "cookie"]


@pytest.mark.anyio
@pytest.mark.parametrize("store", stores())
async def test_save_every_request_resends_the_cookie(store: type[SessionStore]) -> None:
    shared = store()
    async with client(probe(store=shared, save_every_request=True)) as http:
        await http.get("/set?user=alice")
        read = await http.get("/get")
        assert read.json() == {"user": "alice"}
        assert only_set_cookie(read)[2]["max-age"] == "1209600"
    async with client(probe(store=shared)) as http:
        await http.get("/set?user=alice")
        assert (await http.get("/get")).headers.get_list("set-cookie") == []


@pytest.mark.anyio
@pytest.mark.parametrize("store", stores())
async def test_save_every_request_resends_even_when_the_app_never_looks(
    store: type[SessionStore],
) -> None:
    shared = store()
    async with client(probe(store=shared)) as http:
        await http.get("/set?user=alice")
        cookies = http.cookies
    app = SessionMiddleware(untouched_app, secret=SECRET, store=shared, save_every_request=True)
    async with client(app, cookies=cookies) as http:
        response = await http.get("/")
        assert only_set_cookie(response)[0] == COOKIE
    async with client(probe(store=shared), cookies=http.cookies) as http:
        assert (await http.get("/get")).json() == {"user": "alice"}


@pytest.mark.anyio
async def test_save_every_request_sends_nothing_for_an_empty_session() -> None:
    async with client(probe(save_every_request=True)) as http:
        response = await http.get("/get")
    assert response.headers.get_list("set-cookie") == []


# -- bad cookies --------------------------------------------------------------


def bad_cookies() -> list[Any]:
    valid_other_secret = session_signer(OTHER_SECRET).sign("A" * 43)
    signed_wrong_salt = session_signer().sign("A" * 43).replace("A", "B", 1)
    return [
        pytest.param("garbage", id="garbage"),
        pytest.param("no-separator", id="no-separator"),
        pytest.param("a.b.c.d", id="dots"),
        pytest.param(valid_other_secret, id="other-secret"),
        pytest.param(signed_wrong_salt, id="tampered"),
        pytest.param("x" * 4000, id="long"),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("store", stores())
@pytest.mark.parametrize("cookie", bad_cookies())
async def test_bad_cookie_gives_an_empty_session_and_a_security_warning(
    store: type[SessionStore], cookie: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="doorman.security")
    async with client(probe(store=store())) as http:
        http.cookies[COOKIE] = cookie
        response = await http.get("/get")
    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers.get_list("set-cookie") == []  # nothing to write, nothing to delete
    warnings = [r for r in caplog.records if r.name == "doorman.security"]
    assert warnings
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "127.0.0.1" in warnings[0].getMessage()  # says where it came from


@pytest.mark.anyio
@pytest.mark.parametrize("store", stores())
async def test_tampered_real_cookie(
    store: type[SessionStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="doorman.security")
    async with client(probe(store=store())) as http:
        await http.get("/set?user=alice")
        cookie = http.cookies[COOKIE]
        for index in (0, len(cookie) // 2, len(cookie) - 1):
            replacement = "A" if cookie[index] != "A" else "B"
            http.cookies.clear()
            http.cookies[COOKIE] = cookie[:index] + replacement + cookie[index + 1 :]
            response = await http.get("/get")
            assert response.status_code == 200
            assert response.json() == {}
        assert len([r for r in caplog.records if r.name == "doorman.security"]) == 3
        http.cookies.clear()
        http.cookies[COOKIE] = cookie
        assert (await http.get("/get")).json() == {"user": "alice"}


@pytest.mark.anyio
async def test_a_write_after_a_bad_cookie_replaces_it() -> None:
    async with client(probe()) as http:
        http.cookies[COOKIE] = "garbage"
        response = await http.get("/set?user=alice")
        assert only_set_cookie(response)[1] != "garbage"
        assert (await http.get("/get")).json() == {"user": "alice"}


@pytest.mark.anyio
@pytest.mark.parametrize("store", stores())
async def test_the_good_one_of_several_same_name_cookies_is_used(
    store: type[SessionStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="doorman.security")
    async with client(probe(store=store())) as http:
        await http.get("/set?user=alice")
        good = http.cookies[COOKIE]
        http.cookies.clear()
        response = await http.get("/get", headers={"cookie": f"{COOKIE}=forged; {COOKIE}={good}"})
    assert response.json() == {"user": "alice"}
    assert [r for r in caplog.records if r.name == "doorman.security"]


# -- secret rotation ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("store", stores())
async def test_secret_rotation_through_the_middleware(store: type[SessionStore]) -> None:
    shared = store()
    async with client(probe(secret=OTHER_SECRET, store=shared)) as http:
        await http.get("/set?user=alice")
        cookies = http.cookies
    rotated = probe(secret=[SECRET, OTHER_SECRET], store=shared)
    async with client(rotated, cookies=cookies) as http:
        read = await http.get("/get")
        assert read.json() == {"user": "alice"}
        assert read.headers.get_list("set-cookie") == []  # reading alone does not re-sign
        written = await http.get("/set?seen=1")
        value = only_set_cookie(written)[1]
    assert session_signer(SECRET).unsign(value)  # re-signed with the newest secret
    with pytest.raises(Exception, match="signature"):
        session_signer(OTHER_SECRET).unsign(value)
    async with client(probe(secret=SECRET, store=shared)) as http:
        http.cookies[COOKIE] = value
        assert (await http.get("/get")).json() == {"user": "alice", "seen": "1"}
    async with client(probe(secret=SECRET, store=shared), cookies=cookies) as http:
        assert (await http.get("/get")).json() == {}  # old secret dropped: old cookie dies


# -- scopes and errors --------------------------------------------------------


@pytest.mark.anyio
async def test_lifespan_passes_through_untouched() -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))
        await send({"type": "lifespan.startup.complete"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await SessionMiddleware(app, secret=SECRET)(scope, receive, send)
    assert len(seen) == 1
    assert seen[0][0] is scope
    assert "session" not in scope
    assert seen[0][1] is receive
    assert seen[0][2] is send
    assert sent == [{"type": "lifespan.startup.complete"}]


@pytest.mark.anyio
@pytest.mark.parametrize("store", stores())
async def test_server_error_saves_nothing_for_a_new_session(store: type[SessionStore]) -> None:
    shared = store()
    async with client(probe(store=shared)) as http:
        response = await http.get("/fail?user=mallory")
        assert response.status_code == 500
        assert response.headers.get_list("set-cookie") == []
        assert (await http.get("/get")).json() == {}
    if isinstance(shared, MemoryStore):
        assert len(shared) == 0


@pytest.mark.anyio
async def test_flush_in_a_server_error_still_ends_the_session() -> None:
    store = MemoryStore()

    def flush_then_fail(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/set":
            session["user"] = "alice"
            return dict(session)
        session.flush()
        session["half"] = "done"  # written after the logout, in a failing request
        return 500, {}

    async with client(
        SessionMiddleware(json_app(flush_then_fail), secret=SECRET, store=store)
    ) as http:
        await http.get("/set")
        old = http.cookies[COOKIE]
        assert len(store) == 1
        response = await http.get("/logout")
        assert response.status_code == 500
        _, value, attributes = only_set_cookie(response)
        assert value == ""
        assert attributes["max-age"] == "0"
        assert len(store) == 0
        http.cookies[COOKIE] = old
        assert (await http.get("/set")).json() == {"user": "alice"}
    assert store.load_nowait(session_signer().unsign(old)) is None


@pytest.mark.anyio
async def test_websocket_scope_gets_a_session() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["user"] = get_session(scope).get("user")
        await send({"type": "websocket.close", "code": 1000})

    async with client(probe()) as http:
        await http.get("/set?user=alice")
        value = http.cookies[COOKIE]
    scope: Scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [(b"cookie", f"{COOKIE}={value}".encode())],
        "scheme": "ws",
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        pass

    await SessionMiddleware(app, secret=SECRET)(scope, receive, send)
    assert seen == {"user": "alice"}


def test_set_cookie_parser_sees_each_attribute() -> None:
    name, value, attributes = parse_set_cookie("a=b=c; Path=/; HttpOnly")
    assert (name, value, attributes) == ("a", "b=c", {"path": "/", "httponly": ""})


class SavesFail(MemoryStore):
    """Loads work; every save fails as if the server had just gone away."""

    save_nowait = None  # type: ignore[assignment]  # no shortcut: the middleware awaits save()

    async def save(self, key: str | None, payload: str, expires_at: float) -> str:
        from doorman.exceptions import StoreError

        raise StoreError("the store went away")


@pytest.mark.anyio
async def test_a_failed_save_under_starlette_answers_503_not_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Starlette catches what send() raises and answers 500: the middleware answers first."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def remember(request: Request) -> JSONResponse:
        request.session["user"] = "alice"
        return JSONResponse({"saved": True})

    from doorman.integrations.starlette import exception_handlers

    # With doorman's handlers, Starlette catches the StoreError that send() raises and
    # answers it, through send() again: "response already started", a 500.
    starlette_app = Starlette(routes=[Route("/", remember)], exception_handlers=exception_handlers)
    app = SessionMiddleware(starlette_app, secret=SECRET, store=SavesFail())
    async with client(app) as browser:
        response = await browser.get("/")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "set-cookie" not in response.headers
    assert "saved" not in response.text
    assert "the store went away" in caplog.text
