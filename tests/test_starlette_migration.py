"""Switching from Starlette's SessionMiddleware with `secret_key=`: old cookies, short secrets."""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings
from typing import Any

import httpx
import itsdangerous
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from doorman import (
    ConfigError,
    CookieStore,
    MemoryStore,
    SessionMiddleware,
    WeakSecretWarning,
)
from doorman._types import Receive, Scope, Send
from doorman.sessions import MAX_COOKIE_BYTES
from doorman.sessions.legacy import StarletteCookieReader
from doorman.signing import MAKE_A_SECRET
from doorman.stores import SessionStore

from .conftest import SECRET
from .helpers import client, only_set_cookie, session_signer

SHORT = "example"  # what Starlette's own tests use


async def unused_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("not called")


def starlette_cookie(data: Any, secret: str = SECRET, signed_at: int | None = None) -> str:
    """A cookie value exactly as Starlette's SessionMiddleware writes it."""

    class SignedThen(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) if signed_at is None else signed_at

    payload = base64.b64encode(json.dumps(data).encode("utf-8"))
    return SignedThen(secret).sign(payload).decode("utf-8")


# -- the reader, against itsdangerous itself -----------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(min_size=1, max_size=80),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
def test_the_reader_reads_what_itsdangerous_signs(secret: str, data: dict[str, Any]) -> None:
    value = starlette_cookie(data, secret)
    assert StarletteCookieReader([secret.encode()], max_age=60).loads(value) == data


@settings(max_examples=300, deadline=None)
@given(
    value=st.text(alphabet=st.characters(max_codepoint=255), max_size=200)
    | st.lists(st.text(alphabet="AZaz09-_=+/.", max_size=40), min_size=2, max_size=4).map(".".join)
)
def test_the_reader_answers_none_to_anything_else(value: str) -> None:
    assert StarletteCookieReader([SECRET.encode()], max_age=60).loads(value) is None


def test_the_reader_tries_every_secret() -> None:
    value = starlette_cookie({"user": "alice"}, "old-secret")
    reader = StarletteCookieReader([b"new-secret", b"old-secret"], max_age=None)
    assert reader.loads(value) == {"user": "alice"}


def tampered(value: str) -> list[str]:
    payload, stamp, signature = value.split(".")
    other_payload = base64.b64encode(json.dumps({"user": "admin"}).encode()).decode()
    flip = "A" if signature[0] != "A" else "B"
    return [
        f"{other_payload}.{stamp}.{signature}",  # other data, the old signature
        f"{payload}.{stamp}.{flip}{signature[1:]}",  # a damaged signature
        f"{payload}.{stamp}.",  # none
        f"{payload}.{stamp}",  # no timestamp
        f"{payload}..{signature}",
        value + "=",
        value.replace(".", "", 1),
        "é" + value,
        "invalid",
        "",
    ]


@pytest.mark.parametrize("index", range(10))
def test_the_reader_refuses_a_forged_or_damaged_cookie(index: int) -> None:
    value = starlette_cookie({"user": "alice"})
    reader = StarletteCookieReader([SECRET.encode()], max_age=None)
    assert reader.loads(value) == {"user": "alice"}
    assert reader.loads(tampered(value)[index]) is None


def test_the_reader_refuses_another_secret() -> None:
    value = starlette_cookie({"user": "alice"}, "someone-elses-secret")
    assert StarletteCookieReader([SECRET.encode()], max_age=None).loads(value) is None


def test_the_reader_honours_max_age_as_starlette_does() -> None:
    now = int(time.time())
    reader = StarletteCookieReader([SECRET.encode()], max_age=3600)
    assert reader.loads(starlette_cookie({"n": 1}, signed_at=now - 3600), now=now) == {"n": 1}
    assert reader.loads(starlette_cookie({"n": 1}, signed_at=now - 3601), now=now) is None
    assert reader.loads(starlette_cookie({"n": 1}, signed_at=now + 5), now=now) is None
    forever = StarletteCookieReader([SECRET.encode()], max_age=None)
    assert forever.loads(starlette_cookie({"n": 1}, signed_at=1), now=now) == {"n": 1}


@pytest.mark.parametrize("data", [[1, 2], "text", None, {"x": float("nan")}, {"x": float("inf")}])
def test_the_reader_refuses_what_is_no_session(data: Any) -> None:
    reader = StarletteCookieReader([SECRET.encode()], max_age=None)
    assert reader.loads(starlette_cookie(data)) is None


#: Signed JSON that doorman could not store again: numbers past a float, lone surrogates.
UNSTORABLE = ['{"x": 1e999}', '{"x": [-1e400]}', '{"x": "\\ud800"}', '{"\\udfff": 1}']


def starlette_cookie_of_text(text: str, secret: str = SECRET) -> str:
    """A cookie Starlette would sign over this JSON text (json.dumps never writes some of it)."""
    payload = base64.b64encode(text.encode("ascii"))
    return itsdangerous.TimestampSigner(secret).sign(payload).decode("ascii")


@pytest.mark.parametrize("text", UNSTORABLE)
def test_the_reader_refuses_what_doorman_could_not_store(text: str) -> None:
    reader = StarletteCookieReader([SECRET.encode()], max_age=None)
    assert reader.loads(starlette_cookie_of_text('{"x": 1}')) == {"x": 1}
    assert reader.loads(starlette_cookie_of_text(text)) is None


@pytest.mark.anyio
@pytest.mark.parametrize("store", [CookieStore, MemoryStore])
@pytest.mark.parametrize("text", UNSTORABLE)
async def test_a_signed_cookie_doorman_could_not_store_is_no_500(
    store: type[SessionStore], text: str
) -> None:
    """Signed with the secret (a short one is guessed), yet the JSON cannot be saved again."""
    ours = session_app(SessionMiddleware, secret_key=SECRET, store=store())
    async with client_with(ours, starlette_cookie_of_text(text)) as http:
        response = await http.get("/add?n=1")
    assert response.status_code == 200
    assert response.json() == {"n": "1"}  # a new session


# -- taking over Starlette's sessions --------------------------------------------------


def session_app(middleware: type, **options: Any) -> Starlette:
    async def show(request: Request) -> JSONResponse:
        return JSONResponse(request.session)

    async def add(request: Request) -> JSONResponse:
        request.session.update(request.query_params)
        return JSONResponse(request.session)

    routes = [Route("/", show), Route("/add", add)]
    return Starlette(routes=routes, middleware=[Middleware(middleware, **options)])


async def cookie_from_starlette(secret: str = SECRET) -> str:
    """Sign alice in through a real Starlette SessionMiddleware app; its cookie."""
    async with client(session_app(StarletteSessionMiddleware, secret_key=secret)) as http:
        await http.get("/add?user=alice&theme=dark")
        return http.cookies["session"]


def client_with(app: Starlette, value: str) -> httpx.AsyncClient:
    """A client holding ``session=value`` as a browser would: a Set-Cookie replaces it."""
    http = client(app)
    http.cookies.set("session", value, domain="testserver.local")
    return http


@pytest.mark.anyio
@pytest.mark.parametrize("store", [CookieStore, MemoryStore])
async def test_a_starlette_session_is_carried_over_and_reissued(
    store: type[SessionStore], caplog: pytest.LogCaptureFixture
) -> None:
    old = await cookie_from_starlette()
    store_ = store()
    ours = session_app(SessionMiddleware, secret_key=SECRET, store=store_)
    caplog.set_level(logging.DEBUG, logger="doorman")
    async with client_with(ours, old) as http:
        response = await http.get("/")
        assert response.json() == {"user": "alice", "theme": "dark"}
        name, new, attributes = only_set_cookie(response)
        assert (name, attributes["max-age"]) == ("session", str(14 * 24 * 3600))
        session_signer().unsign(new)  # doorman's format now, signed by doorman
        assert StarletteCookieReader([SECRET.encode()], None).loads(new) is None
        again = await http.get("/add?n=1")  # the new cookie carries on from here
        assert again.json() == {"user": "alice", "theme": "dark", "n": "1"}
        again = await http.get("/")
        assert again.json() == {"user": "alice", "theme": "dark", "n": "1"}
        assert again.headers.get_list("set-cookie") == []  # taken over once, not every time
    if isinstance(store_, MemoryStore):
        assert len(store_) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.anyio
async def test_a_starlette_session_is_carried_over_to_a_network_store(tmp_path: Any) -> None:
    from doorman.stores.sql import SQLStore

    old = await cookie_from_starlette()
    store = SQLStore(str(tmp_path / "sessions.db"))
    try:
        ours = session_app(SessionMiddleware, secret_key=SECRET, store=store)
        async with client_with(ours, old) as http:
            assert (await http.get("/")).json() == {"user": "alice", "theme": "dark"}
            key = session_signer().unsign(http.cookies["session"])
            assert await store.load(key) is not None
    finally:
        await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("store", [CookieStore, MemoryStore])
async def test_a_starlette_session_too_large_for_a_doorman_cookie_is_no_500(
    store: type[SessionStore], caplog: pytest.LogCaptureFixture
) -> None:
    # Starlette sets cookies of any size; one this close to the browser's limit leaves
    # doorman's cookie, about as long, no room for its attributes (Max-Age).
    old = starlette_cookie({"blob": "x" * 3025})
    assert 4050 < len(old) < MAX_COOKIE_BYTES
    async with client_with(
        session_app(SessionMiddleware, secret_key=SECRET, store=store()), old
    ) as http:
        response = await http.get("/")
    assert response.status_code == 200
    assert response.json() == {"blob": "x" * 3025}  # this once
    _, value, attributes = only_set_cookie(response)
    if store is CookieStore:
        assert (value, attributes["max-age"]) == ("", "0")  # dropped: the user signs in again
        assert "too large" in caplog.text
    else:
        assert session_signer().unsign(value)  # a server-side store keeps it whatever its size


@pytest.mark.anyio
async def test_a_starlette_cookie_past_its_max_age_is_not_carried_over() -> None:
    old = starlette_cookie({"user": "alice"}, signed_at=int(time.time()) - 3601)
    ours = session_app(SessionMiddleware, secret_key=SECRET, max_age=3600)
    async with client_with(ours, old) as http:
        response = await http.get("/")
        assert response.json() == {}
        assert response.headers.get_list("set-cookie") == []


@pytest.mark.anyio
@pytest.mark.parametrize("index", range(10))
async def test_a_forged_starlette_cookie_is_dropped_quietly(
    index: int, caplog: pytest.LogCaptureFixture
) -> None:
    forged = tampered(starlette_cookie({"user": "alice"}))[index]
    caplog.set_level(logging.DEBUG, logger="doorman")
    ours = session_app(SessionMiddleware, secret_key=SECRET)
    async with client(ours) as http:  # raw bytes: one of them is not ASCII
        response = await http.get("/", headers={"cookie": f"session={forged}".encode("latin-1")})
    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers.get_list("set-cookie") == []
    records = [r for r in caplog.records if r.name.startswith("doorman")]
    if forged:  # an empty cookie is no cookie
        assert [r.levelno for r in records] == [logging.DEBUG]
        assert SECRET not in records[0].getMessage()


@pytest.mark.anyio
async def test_starlette_cookies_are_read_only_with_starlettes_spelling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = await cookie_from_starlette()
    ours = session_app(SessionMiddleware, secret=SECRET, session_cookie="session")
    async with client_with(ours, old) as http:
        assert (await http.get("/")).json() == {}
    # doorman's own spelling keeps its rule: a cookie it did not sign is a security event.
    assert [r.name for r in caplog.records if r.levelno == logging.WARNING] == ["doorman.security"]


# -- short secrets and Starlette's max_age values ---------------------------------------


@pytest.mark.anyio
async def test_a_short_secret_key_works_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    ours = session_app(SessionMiddleware, secret_key=SHORT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with client(ours) as http:
            for _ in range(3):
                assert (await http.get("/add?user=alice")).status_code == 200
            assert (await http.get("/")).json() == {"user": "alice"}
    found = [w for w in caught if issubclass(w.category, WeakSecretWarning)]
    assert len(found) == 1, [str(w.message) for w in caught]
    logged = [r for r in caplog.records if r.name == "doorman.security"]
    assert len(logged) == 1
    for text in (str(found[0].message), logged[0].getMessage()):
        assert "secret_key" in text and "7 characters" in text
        assert MAKE_A_SECRET in text  # names the fix, the one recipe every message gives
        assert SHORT not in text.replace("secret_key", "")  # never the secret itself


def test_a_long_secret_key_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SessionMiddleware(unused_app, secret_key=SECRET)
    assert caplog.records == []


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"secret": SHORT}, "32"),  # doorman's own spelling keeps refusing
        ({"secret_key": ""}, "0 characters"),
        ({"secret_key": [SECRET, ""]}, "0 characters"),
    ],
)
def test_short_secrets_that_are_still_refused(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        SessionMiddleware(unused_app, **options)


@pytest.mark.anyio
async def test_a_starlette_cookie_signed_with_a_short_secret_is_carried_over() -> None:
    old = await cookie_from_starlette(SHORT)
    with pytest.warns(WeakSecretWarning):  # Starlette builds its middleware on the first request
        async with client_with(session_app(SessionMiddleware, secret_key=SHORT), old) as http:
            assert (await http.get("/")).json() == {"user": "alice", "theme": "dark"}


@pytest.mark.anyio
@pytest.mark.parametrize("max_age", [0, -1])
async def test_starlettes_max_age_zero_or_less_ends_sessions_at_once(max_age: int) -> None:
    ours = session_app(SessionMiddleware, secret_key=SECRET, max_age=max_age)
    async with client(ours) as http:
        response = await http.get("/add?user=alice")
        _, value, attributes = only_set_cookie(response)
        assert attributes["max-age"] == str(max_age)
    async with client_with(ours, value) as http:  # a client that kept it anyway
        assert (await http.get("/")).json() == {}


def test_max_age_zero_is_still_refused_with_doormans_spelling() -> None:
    with pytest.raises(ConfigError, match="max_age"):
        SessionMiddleware(unused_app, secret=SECRET, max_age=0)


# -- the Set-Cookie header, as a string ----------------------------------------------


def attribute_parts(header: str) -> set[str]:
    """The attributes of a Set-Cookie header as written, names in their own case."""
    return set(header.split("; ")[1:])


@pytest.mark.anyio
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"path": "/", "max_age": None, "same_site": "strict"},
        {"https_only": True, "same_site": "none", "domain": "example.com", "partitioned": True},
    ],
    ids=["defaults", "strict", "everything"],
)
async def test_with_secret_key_the_cookie_attributes_are_spelled_as_starlette_does(
    options: dict[str, Any],
) -> None:
    headers = []
    for middleware in (StarletteSessionMiddleware, SessionMiddleware):
        async with client(session_app(middleware, secret_key=SECRET, **options)) as http:
            response = await http.get("/add?user=alice")
            headers.append(response.headers["set-cookie"])
    theirs, ours = headers
    assert attribute_parts(ours) == attribute_parts(theirs)


@pytest.mark.anyio
async def test_with_secret_the_cookie_attributes_keep_doormans_spelling() -> None:
    app = session_app(SessionMiddleware, secret=SECRET, partitioned=True, domain="example.com")
    async with client(app) as http:
        header = (await http.get("/add?user=alice")).headers["set-cookie"]
    assert attribute_parts(header) == {
        "Max-Age=1209600",
        "Path=/",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Domain=example.com",
        "Partitioned",
    }
