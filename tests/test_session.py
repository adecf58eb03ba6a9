"""Session: data rules, keys, life cycle, expiry and timeouts, through real requests."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.requests import Request

from doorman import (
    CookieStore,
    MemoryStore,
    SessionDataError,
    SessionMiddleware,
    SessionNotLoaded,
    SessionTooLarge,
    clear_session,
    get_session,
    load_session,
)
from doorman._types import Scope
from doorman.sessions import MAX_COOKIE_BYTES
from doorman.stores import SessionStore, new_session_key
from doorman.stores.sql import SQLStore

from .conftest import SECRET, STORE_KINDS, Clock, make_store
from .helpers import COOKIE, client, json_app, only_set_cookie, session_signer


def query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope["query_string"].decode()))


async def actions(scope: Scope, session: Any) -> Any:
    """``/set?k=v``, ``/get``, ``/clear``, ``/flush``, ``/cycle``, ``/expiry?v=...``."""
    path = scope["path"]
    if path == "/set":
        session.update(query(scope))
    elif path == "/clear":
        session.clear()
    elif path == "/flush":
        session.flush()
    elif path == "/cycle":
        session.cycle_key()
    elif path == "/expiry":
        session["user"] = "alice"
        session.set_expiry(EXPIRIES[query(scope)["v"]])
    return dict(session)


EXPIRIES: dict[str, Any] = {
    "0": 0,
    "3600": 3600,
    "5min": dt.timedelta(minutes=5),
    "naive": dt.datetime(2100, 1, 1),
    "none": None,
}


def app_with(store: SessionStore | None = None, **options: Any) -> SessionMiddleware:
    if store is not None:
        options["store"] = store
    return SessionMiddleware(json_app(actions), secret=SECRET, **options)


def key_of(cookie: str) -> str:
    return session_signer().unsign(cookie)


@pytest.fixture(params=[kind for kind in STORE_KINDS if kind != "cookie"])
async def server_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SessionStore]:
    """Each store that keeps sessions server-side, on the real service."""
    store = await make_store(request.param, request, tmp_path)
    yield store
    await store.close()


# -- what a session may hold ----------------------------------------------------


class Opaque:
    pass


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value",
    [
        dt.datetime.now(dt.UTC),
        {1, 2},
        Opaque(),
        math.nan,
        math.inf,
        b"bytes",
        [1, {2}],
        {"nested": {(1, 2): 3}},
    ],
    ids=["datetime", "set", "object", "nan", "inf", "bytes", "set-in-list", "tuple-key"],
)
async def test_non_json_value_is_refused_naming_the_key(value: Any) -> None:
    store = MemoryStore()

    def handler(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/bad":
            session["when"] = value
        else:
            session["user"] = "alice"
        return {}

    async with client(SessionMiddleware(json_app(handler), secret=SECRET, store=store)) as http:
        await http.get("/good")
        with pytest.raises(SessionDataError, match="'when'") as caught:
            await http.get("/bad")
        assert isinstance(caught.value, TypeError)
        assert "JSON" in str(caught.value)
    async with client(app_with(store), cookies=http.cookies) as http:
        assert (await http.get("/get")).json() == {"user": "alice"}  # the good data is intact


@pytest.mark.anyio
@pytest.mark.parametrize("key", [1, b"user", None, ("a",), 1.5])
async def test_non_str_key_is_refused(key: Any) -> None:
    def handler(scope: Scope, session: Any) -> Any:
        session[key] = "value"
        return {}

    async with client(SessionMiddleware(json_app(handler), secret=SECRET)) as http:
        with pytest.raises(SessionDataError, match="str"):
            await http.get("/")


@pytest.mark.anyio
async def test_json_values_round_trip() -> None:
    value = {"s": "naïve ☃ ; = ,", "i": 2**53, "f": 1.5, "b": True, "n": None, "l": [1, ["x"]]}

    def handler(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/set":
            session["value"] = value
        return dict(session)

    for store in (CookieStore(), MemoryStore()):
        app = SessionMiddleware(json_app(handler), secret=SECRET, store=store)
        async with client(app) as http:
            await http.get("/set")
            assert (await http.get("/get")).json() == {"value": value}


@pytest.mark.anyio
async def test_mapping_behaviour() -> None:
    def handler(scope: Scope, session: Any) -> Any:
        session["a"] = 1
        session["b"] = 2
        del session["a"]
        missing = "a" not in session and session.get("a", "default") == "default"
        try:
            session["a"]
        except KeyError:
            raised = True
        else:
            raised = False
        popped = session.pop("b")
        session.setdefault("c", [])
        return {"missing": missing, "raised": raised, "popped": popped, "rest": dict(session)}

    async with client(SessionMiddleware(json_app(handler), secret=SECRET)) as http:
        body = (await http.get("/")).json()
    assert body == {"missing": True, "raised": True, "popped": 2, "rest": {"c": []}}


# -- size -------------------------------------------------------------------------


def blob_app(store: SessionStore) -> SessionMiddleware:
    def handler(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/set":
            session["blob"] = "x" * int(query(scope)["n"])
        return {"size": len(session.get("blob", ""))}

    return SessionMiddleware(json_app(handler), secret=SECRET, store=store)


@pytest.mark.anyio
async def test_too_large_for_a_cookie_is_refused_not_dropped() -> None:
    async with client(blob_app(CookieStore())) as http:
        with pytest.raises(SessionTooLarge, match=str(MAX_COOKIE_BYTES)) as caught:
            await http.get("/set?n=5000")
    assert "SQLStore" in str(caught.value)  # says what to do instead
    store = MemoryStore()
    async with client(blob_app(store)) as http:
        response = await http.get("/set?n=5000")
        assert len(response.headers["set-cookie"]) < 300  # only an id travels
        assert (await http.get("/get")).json() == {"size": 5000}


@pytest.mark.anyio
async def test_no_cookie_over_the_limit_is_ever_sent() -> None:
    refused, sent = 0, []
    async with client(blob_app(CookieStore())) as http:
        for n in range(2900, 3150):
            http.cookies.clear()
            try:
                response = await http.get(f"/set?n={n}")
            except SessionTooLarge:
                refused += 1
            else:
                sent.append(len(response.headers["set-cookie"].encode("latin-1")))
    assert refused
    assert sent
    assert max(sent) <= MAX_COOKIE_BYTES
    assert max(sent) >= MAX_COOKIE_BYTES - 3  # the limit is the limit, not something stricter


# -- keys -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("forged", [new_session_key(), "attacker-chosen-id"], ids=["key", "free"])
async def test_unknown_key_is_not_adopted(server_store: SessionStore, forged: str) -> None:
    store = server_store
    async with client(app_with(store)) as http:
        http.cookies[COOKIE] = session_signer().sign(forged)
        response = await http.get("/set?user=alice")
        value = only_set_cookie(response)[1]
        minted = key_of(value)
        assert minted != forged
        assert await store.load(forged) is None
        assert await store.load(minted) is not None
        assert (await http.get("/get")).json() == {"user": "alice"}


@pytest.mark.anyio
async def test_cycle_key(server_store: SessionStore) -> None:
    store = server_store
    async with client(app_with(store)) as http:
        await http.get("/set?user=alice")
        old = http.cookies[COOKIE]
        response = await http.get("/cycle")
        assert response.json() == {"user": "alice"}
        new = only_set_cookie(response)[1]
        assert key_of(new) != key_of(old)
        assert await store.load(key_of(old)) is None
        assert await store.load(key_of(new)) is not None
        assert (await http.get("/get")).json() == {"user": "alice"}
        http.cookies.clear()
        http.cookies[COOKIE] = old
        assert (await http.get("/get")).json() == {}


@pytest.mark.anyio
async def test_cycle_key_on_the_cookie_store_changes_the_cookie() -> None:
    async with client(app_with(CookieStore())) as http:
        await http.get("/set?user=alice")
        old = http.cookies[COOKIE]
        new = only_set_cookie(await http.get("/cycle"))[1]
        assert new != old
        assert (await http.get("/get")).json() == {"user": "alice"}


# -- ending sessions ----------------------------------------------------------------


@pytest.mark.anyio
async def test_flush_deletes_the_cookie_and_the_row(any_store: SessionStore) -> None:
    async with client(app_with(any_store)) as http:
        await http.get("/set?user=alice")
        old = http.cookies[COOKIE]
        response = await http.get("/flush")
        assert response.json() == {}
        _, value, attributes = only_set_cookie(response)
        assert value == ""
        assert attributes["max-age"] == "0"
        assert COOKIE not in http.cookies
        if not any_store.stateless:
            assert await any_store.load(key_of(old)) is None


@pytest.mark.anyio
async def test_clear_in_an_existing_session_deletes_the_cookie(any_store: SessionStore) -> None:
    async with client(app_with(any_store)) as http:
        await http.get("/set?user=alice")
        old = http.cookies[COOKIE]
        response = await http.get("/clear")
        assert response.json() == {}
        assert only_set_cookie(response)[2]["max-age"] == "0"
        assert COOKIE not in http.cookies
        if not any_store.stateless:
            assert await any_store.load(key_of(old)) is None


@pytest.mark.anyio
async def test_clear_or_flush_of_a_new_session_sends_nothing() -> None:
    async with client(app_with(MemoryStore())) as http:
        for path in ("/clear", "/flush"):
            response = await http.get(path)
            assert response.headers.get_list("set-cookie") == []


@pytest.mark.anyio
async def test_a_concurrent_logout_is_not_undone(server_store: SessionStore) -> None:
    store = server_store

    async def handler(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/set":
            session["user"] = "alice"
        else:
            await store.delete(session.key)  # another request logs out meanwhile
            session["cart"] = "full"
        return dict(session)

    async with client(SessionMiddleware(json_app(handler), secret=SECRET, store=store)) as http:
        await http.get("/set")
        old = http.cookies[COOKIE]
        response = await http.get("/race")
        assert response.status_code == 200
        _, value, attributes = only_set_cookie(response)
        assert (value, attributes["max-age"]) == ("", "0")
        assert await store.load(key_of(old)) is None
    async with client(app_with(store)) as http:
        http.cookies[COOKIE] = old
        assert (await http.get("/get")).json() == {}


# -- expiry -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("store", [CookieStore, MemoryStore])
async def test_set_expiry_zero_makes_a_browser_session_cookie(store: type[SessionStore]) -> None:
    async with client(app_with(store())) as http:
        response = await http.get("/expiry?v=0")
        assert "max-age" not in only_set_cookie(response)[2]
        response = await http.get("/set?more=1")  # stays a browser-session cookie
        assert "max-age" not in only_set_cookie(response)[2]
        assert (await http.get("/get")).json() == {"user": "alice", "more": "1"}


@pytest.mark.anyio
async def test_a_browser_session_ends_on_the_server_by_max_age() -> None:
    """Browsers that restore their session cookies must not keep it longer than max_age."""
    store = MemoryStore()
    async with client(app_with(store, max_age=3600)) as http:
        started = time.time()
        await http.get("/expiry?v=0")
        [(_, expires_at)] = store._sessions.values()
    assert started + 3600 - 5 <= expires_at <= time.time() + 3600


@pytest.mark.anyio
@pytest.mark.parametrize(("expiry", "max_age"), [("3600", 3600), ("5min", 300)])
async def test_set_expiry_seconds(expiry: str, max_age: int) -> None:
    async with client(app_with(MemoryStore())) as http:
        response = await http.get(f"/expiry?v={expiry}")
        assert only_set_cookie(response)[2]["max-age"] == str(max_age)
        response = await http.get("/set?more=1")
        assert only_set_cookie(response)[2]["max-age"] == str(max_age)  # kept on later saves


@pytest.mark.anyio
async def test_set_expiry_none_goes_back_to_max_age() -> None:
    async with client(app_with(MemoryStore(), max_age=7200)) as http:
        await http.get("/expiry?v=3600")
        response = await http.get("/expiry?v=none")
        assert only_set_cookie(response)[2]["max-age"] == "7200"


@pytest.mark.anyio
async def test_set_expiry_aware_datetime() -> None:
    def handler(scope: Scope, session: Any) -> Any:
        session["user"] = "alice"
        session.set_expiry(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
        return {}

    async with client(SessionMiddleware(json_app(handler), secret=SECRET)) as http:
        response = await http.get("/")
    assert 597 <= int(only_set_cookie(response)[2]["max-age"]) <= 600


@pytest.mark.anyio
async def test_set_expiry_naive_datetime_is_refused() -> None:
    async with client(app_with(MemoryStore())) as http:
        with pytest.raises(ValueError, match="aware"):
            await http.get("/expiry?v=naive")


# -- timeouts: the clock moves on instead of the test sleeping ------------------------


@contextlib.asynccontextmanager
async def clients_for_each_store(**options: Any) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per in-process store, so one move of the clock serves both."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(client(app_with(store, **options)))
            for store in (CookieStore(), MemoryStore())
        ]


@pytest.mark.anyio
async def test_idle_session_ends(clock: Clock) -> None:
    # Times are kept in whole seconds: with an idle_timeout of 1, a read just after a whole
    # second found a session saved just before it already idle (a flaky test, seen once).
    async with clients_for_each_store(idle_timeout=2) as clients:
        for http in clients:
            await http.get("/set?user=alice")
            assert (await http.get("/get")).json() == {"user": "alice"}
        clock.advance(2.1)
        for http in clients:
            assert (await http.get("/get")).json() == {}


@pytest.mark.anyio
async def test_active_session_is_touched_to_stay_alive(clock: Clock) -> None:
    # Times are kept in whole seconds, so an idle_timeout of 2 allows at least 1 s idle.
    async with clients_for_each_store(idle_timeout=2) as clients:
        for http in clients:
            await http.get("/set?user=alice")
        for _ in range(5):  # 2.75 s in all: longer than idle_timeout, never idle that long
            clock.advance(0.55)
            for http in clients:
                response = await http.get("/get")
                assert response.json() == {"user": "alice"}
                assert only_set_cookie(response)[2]["max-age"] == "2"  # re-saved, deadline moved


@pytest.mark.anyio
async def test_absolute_timeout_ends_even_an_active_session(clock: Clock) -> None:
    seen: list[list[bool]] = [[], []]
    async with clients_for_each_store(absolute_timeout=2) as clients:
        for http in clients:
            await http.get("/set?user=alice")
        for step in range(5):  # a write every 0.5 s, for 2.5 s
            clock.advance(0.5)
            for http, log in zip(clients, seen, strict=True):
                log.append("user" in (await http.get(f"/set?step={step}")).json())
    for log in seen:
        assert log[0] is True  # 0.5 s in: alive
        assert log[-1] is False  # 2.5 s in: over, although used all along


# -- lazy loading and the helpers ---------------------------------------------------


@pytest.mark.anyio
async def test_lazy_network_store_needs_load_session(tmp_path: Path) -> None:
    store = SQLStore(str(tmp_path / "sessions.db"))

    async def handler(scope: Scope, session: Any) -> Any:
        path = scope["path"]
        if path == "/set":
            session["user"] = "alice"
        elif path == "/sync":
            try:
                return dict(session)
            except SessionNotLoaded as exc:
                return 409, {"error": str(exc)}
        else:
            loaded = await load_session(Request(scope))
            assert loaded is session
        return dict(session)

    try:
        app = SessionMiddleware(json_app(handler), secret=SECRET, store=store, lazy=True)
        async with client(app) as http:
            await http.get("/set")
            refused = await http.get("/sync")
            assert refused.status_code == 409
            assert "load_session" in refused.json()["error"]
            assert (await http.get("/async")).json() == {"user": "alice"}
            # Nothing was lost by the refused request.
            assert (await http.get("/async")).json() == {"user": "alice"}
        eager = SessionMiddleware(json_app(handler), secret=SECRET, store=store)
        async with client(eager, cookies=http.cookies) as http:
            assert (await http.get("/sync")).json() == {"user": "alice"}
    finally:
        await store.close()


@pytest.mark.anyio
async def test_get_and_clear_session_on_a_scope_and_a_request() -> None:
    store = MemoryStore()

    def handler(scope: Scope, session: Any) -> Any:
        request = Request(scope)
        assert get_session(scope) is session
        assert get_session(request) is session
        assert request.session is session
        if scope["path"] == "/set":
            session["user"] = "alice"
        elif scope["path"] == "/logout-scope":
            clear_session(scope)
        elif scope["path"] == "/logout-request":
            clear_session(request)
        return dict(session)

    app = SessionMiddleware(json_app(handler), secret=SECRET, store=store)
    for logout in ("/logout-scope", "/logout-request"):
        async with client(app) as http:
            await http.get("/set")
            assert len(store) == 1
            response = await http.get(logout)
            assert response.json() == {}
            assert only_set_cookie(response)[2]["max-age"] == "0"
            assert len(store) == 0


def test_get_session_without_the_middleware() -> None:
    with pytest.raises(LookupError, match="SessionMiddleware"):
        get_session({"type": "http"})
    with pytest.raises(LookupError):
        get_session(Request({"type": "http", "headers": []}))
    with pytest.raises(TypeError):
        get_session(42)
