"""Session is a real dict: what dict-taking code does with it, and what it marks for saving."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from doorman import CookieStore, MemoryStore, SessionDataError, SessionMiddleware
from doorman._types import Scope
from doorman.stores import SessionStore
from doorman.stores.sql import SQLStore

from .conftest import SECRET
from .helpers import client, json_app, vary

STORED = {"user": "alice", "n": 1}
IN_PROCESS = [CookieStore, MemoryStore]


def keywords(**given: Any) -> dict[str, Any]:
    return given


# Each is the first thing a request does with a session that its cookie holds, so
# a session still waiting to be loaded would show here as {}.
FIRST_READS: dict[str, Callable[[Any], Any]] = {
    "json.dumps": lambda s: json.loads(json.dumps(s)),
    "json.dumps compact": lambda s: json.loads(json.dumps(s, separators=(",", ":"))),
    "json.dumps indent": lambda s: json.loads(json.dumps(s, indent=2)),
    "dict()": dict,
    "{**s}": lambda s: {**s},
    "f(**s)": lambda s: keywords(**s),
    "copy()": lambda s: s.copy(),
    "s | {}": lambda s: s | {},
    "{} | s": lambda s: {} | s,
    "copy.copy": copy.copy,
    "copy.deepcopy": copy.deepcopy,
    "pickle round trip": lambda s: pickle.loads(pickle.dumps(s)),
    "items()": lambda s: dict(s.items()),
    "keys()": lambda s: {k: STORED[k] for k in s.keys()},  # noqa: SIM118
    "values()": lambda s: dict(zip(STORED, s.values(), strict=True)),
    "iteration": lambda s: {k: s[k] for k in s},
    "sorted()": lambda s: {k: STORED[k] for k in sorted(s)},
    "reversed()": lambda s: {k: STORED[k] for k in reversed(s)},
    "len()": lambda s: STORED if len(s) == len(STORED) else {},
    "bool()": lambda s: STORED if s else {},
    "==": lambda s: STORED if s == STORED else {},
    "!=": lambda s: {} if s != STORED else STORED,
}


def remembering_app(first_read: Callable[[Any], Any], store: SessionStore) -> SessionMiddleware:
    def handler(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/set":
            session.update(STORED)
            return {}
        seen = first_read(session)
        return {"seen": seen, "plain": type(seen) is dict, "is_dict": isinstance(session, dict)}

    return SessionMiddleware(json_app(handler), secret=SECRET, store=store)


@pytest.mark.anyio
@pytest.mark.parametrize("store", IN_PROCESS)
@pytest.mark.parametrize("name", list(FIRST_READS))
async def test_dict_taking_code_sees_the_stored_data(name: str, store: type[SessionStore]) -> None:
    async with client(remembering_app(FIRST_READS[name], store())) as http:
        await http.get("/set")
        response = await http.get("/read")
    body = response.json()
    assert body["seen"] == STORED
    assert body["is_dict"] is True
    assert response.headers.get_list("set-cookie") == []  # a read saves nothing
    assert "cookie" in vary(response)  # and is noted, for caches


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["json.dumps", "dict()", "=="])
async def test_a_network_store_session_is_loaded_before_the_app(name: str, tmp_path: Path) -> None:
    store = SQLStore(str(tmp_path / "sessions.db"))
    try:
        async with client(remembering_app(FIRST_READS[name], store)) as http:
            await http.get("/set")
            assert (await http.get("/read")).json()["seen"] == STORED
    finally:
        await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["copy()", "s | {}", "{} | s", "copy.copy", "pickle round trip"])
async def test_copies_are_plain_dicts(name: str) -> None:
    async with client(remembering_app(FIRST_READS[name], MemoryStore())) as http:
        await http.get("/set")
        assert (await http.get("/read")).json()["plain"] is True


@pytest.mark.anyio
async def test_json_response_of_request_session_under_starlette() -> None:
    async def show(request: Request) -> JSONResponse:
        return JSONResponse({"session": request.session})

    async def count(request: Request) -> JSONResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse(request.session)

    app = Starlette(routes=[Route("/", show), Route("/count", count)])
    app.add_middleware(SessionMiddleware, secret=SECRET)
    async with client(app) as http:
        assert (await http.get("/")).json() == {"session": {}}
        assert (await http.get("/count")).json() == {"n": 1}
        response = await http.get("/")
        assert response.json() == {"session": {"n": 1}}
        assert "cookie" in vary(response)


# -- what marks the session for saving ------------------------------------------------

# (operation, what the session holds afterwards, whether it changed)
WRITES: dict[str, tuple[Callable[[Any], Any], dict[str, Any], bool]] = {
    "s[k] = v": (lambda s: s.__setitem__("b", 2), {"a": 1, "b": 2}, True),
    "del s[k]": (lambda s: s.__delitem__("a"), {}, True),
    "update(mapping)": (lambda s: s.update({"b": 2}), {"a": 1, "b": 2}, True),
    "update(pairs, kw)": (lambda s: s.update([("b", 2)], c=3), {"a": 1, "b": 2, "c": 3}, True),
    "update()": (lambda s: s.update(), {"a": 1}, False),
    "s |= mapping": (lambda s: s.__ior__({"b": 2}), {"a": 1, "b": 2}, True),
    "setdefault(missing)": (lambda s: s.setdefault("b", 2), {"a": 1, "b": 2}, True),
    "setdefault(present)": (lambda s: s.setdefault("a", 9), {"a": 1}, False),
    "pop(present)": (lambda s: s.pop("a"), {}, True),
    "pop(missing, default)": (lambda s: s.pop("zz", None), {"a": 1}, False),
    "popitem()": (lambda s: s.popitem(), {}, True),
    "clear()": (lambda s: s.clear(), {}, True),
    "nested change, mark_modified()": (
        lambda s: (s.__setitem__("a", [1]), s["a"].append(2), s.mark_modified()),
        {"a": [1, 2]},
        True,
    ),
}


def writing_app(operation: Callable[[Any], Any], store: SessionStore) -> SessionMiddleware:
    def handler(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/set":
            session["a"] = 1
        elif scope["path"] == "/write":
            operation(session)
        return dict(session)

    return SessionMiddleware(json_app(handler), secret=SECRET, store=store)


@pytest.mark.anyio
@pytest.mark.parametrize("store", IN_PROCESS)
@pytest.mark.parametrize("name", list(WRITES))
async def test_every_change_is_saved_and_no_non_change_is(
    name: str, store: type[SessionStore]
) -> None:
    operation, after, changes = WRITES[name]
    async with client(writing_app(operation, store())) as http:
        await http.get("/set")
        response = await http.get("/write")
        assert bool(response.headers.get_list("set-cookie")) is changes
        assert (await http.get("/get")).json() == after


@pytest.mark.anyio
@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.update({1: "x"}),
        lambda s: s.update([((1, 2), "x")]),
        lambda s: s.__ior__({None: "x"}),
        lambda s: s.setdefault(b"k", "x"),
    ],
    ids=["update", "update-pairs", "ior", "setdefault"],
)
async def test_non_str_keys_are_refused_by_every_write(operation: Callable[[Any], Any]) -> None:
    async with client(writing_app(operation, MemoryStore())) as http:
        await http.get("/set")
        with pytest.raises(SessionDataError, match="str"):
            await http.get("/write")
        assert (await http.get("/get")).json() == {"a": 1}  # nothing half-written


@pytest.mark.anyio
async def test_mark_accessed_sends_vary_for_a_read_that_skips_python() -> None:
    def handler(scope: Scope, session: Any) -> Any:
        if scope["path"] == "/marked":
            session.mark_accessed()
        return json.loads(json.dumps(session))  # an empty dict: json reads only its size

    app = SessionMiddleware(json_app(handler), secret=SECRET)
    async with client(app) as http:
        assert "cookie" not in vary(await http.get("/unmarked"))
        response = await http.get("/marked")
        assert "cookie" in vary(response)
        assert response.headers.get_list("set-cookie") == []
