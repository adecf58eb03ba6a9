"""Fuzzing the cookie path: no Cookie header may crash the middleware or reach another session.

Each test seeds a real session for "alice" (holding a random marker) and then
throws Cookie headers at the middleware: random bytes, ``=``/``;`` soup, our
cookie name with random, repeated, huge or latin-1 values, values with a valid
signature (made with the real secret and salt) over garbage, and one-character
edits of alice's own cookie. Every answer must be a 200 from the probe app, and
no header that does not carry alice's exact cookie may see her marker.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman import CookieStore, MemoryStore, SessionMiddleware
from doorman._types import Message, Scope
from doorman.sessions import MAX_COOKIE_BYTES
from doorman.signing import b64encode
from doorman.stores import SessionStore
from doorman.stores.sql import SQLStore
from doorman.testing import session_probe_app

from .conftest import SECRET
from .helpers import session_signer

NAME = b"doorman_session"
SIGNER = session_signer()
PATHS = ["/get", "/set?visited=1", "/flush", "/cycle"]


async def call(app: Any, path: str, cookie_headers: list[bytes]) -> tuple[int, bytes, list[bytes]]:
    """One raw ASGI request, so the Cookie header bytes arrive exactly as drawn."""
    path, _, query = path.partition("?")
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), *((b"cookie", c) for c in cookie_headers)],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    cookies = [value for name, value in start.get("headers", []) if name == b"set-cookie"]
    return start["status"], body, cookies


# -- strategies ---------------------------------------------------------------------

latin1 = st.text(st.characters(max_codepoint=255), max_size=80)
values = st.binary(max_size=120) | latin1.map(lambda t: t.encode("latin-1"))
soup = st.lists(
    st.sampled_from(
        [b"=", b";", b" ", b"\t", b",", b'"', b".", b"\x00", b"\xff", b"\xe9", b"a", b"0", NAME]
    ),
    max_size=60,
).map(b"".join)
named = values.map(lambda v: NAME + b"=" + v)
repeated = st.builds(
    lambda value, times, sep: sep.join([NAME + b"=" + value] * times),
    values,
    st.integers(1, 300),
    st.sampled_from([b"; ", b";", b"; ;", b" ;"]),
)
huge = st.builds(
    lambda char, size: NAME + b"=" + char * size,
    st.sampled_from([b"a", b".", b"=", b"\xff", b"A"]),
    st.integers(3000, 20000),
)
json_garbage = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from([10**400, -(10**400)]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
records = st.fixed_dictionaries(
    {"d": json_garbage, "c": json_garbage, "a": json_garbage},
    optional={"x": json_garbage, "u": json_garbage, "i": json_garbage},
).map(lambda r: json.dumps(r).encode())  # NaN, Infinity and huge numbers included
payloads = (
    st.binary(max_size=100)
    | records
    | json_garbage.map(lambda v: json.dumps(v).encode())
    | st.integers(1, 600).map(lambda depth: b'{"d":' * depth)
)
# Nesting deeper than json's recursion limit, still under the cookie size limit.
deep = st.integers(900, 2500).map(lambda depth: b"[" * depth)
LIVE = str(int(time.time()) + 3600)
stamps = st.sampled_from([LIVE, "0", "", "²", "1" * 13]) | st.text("0123456789²³¹x", max_size=14)
# Valid signatures over garbage: what someone holding the secret could send.
signed_garbage = st.one_of(
    latin1.map(SIGNER.sign),
    st.builds(
        lambda stamp, payload: SIGNER.sign(f"{stamp}.{b64encode(payload)}"), stamps, payloads
    ),
    deep.map(lambda payload: SIGNER.sign(f"{LIVE}.{b64encode(payload)}")),
).map(lambda signed: NAME + b"=" + signed.encode("latin-1"))
headers = st.lists(
    st.one_of(st.binary(max_size=300), soup, named, repeated, huge, signed_garbage),
    min_size=1,
    max_size=3,
)


Edit = tuple[int, bytes, str]
edits = st.tuples(
    st.integers(0, 10_000),
    st.binary(min_size=1, max_size=1),
    st.sampled_from(["replace", "delete", "insert"]),
)


def edited(cookie: str, edit: Edit) -> bytes:
    """Alice's cookie with one character replaced, removed or added."""
    raw = cookie.encode()
    index, char, kind = edit
    index %= len(raw)
    if kind == "replace":
        raw = raw[:index] + char + raw[index + 1 :]
    elif kind == "delete":
        raw = raw[:index] + raw[index + 1 :]
    else:
        raw = raw[:index] + char + raw[index:]
    return NAME + b"=" + raw


# -- the harness --------------------------------------------------------------------


@dataclass
class Seeded:
    app: SessionMiddleware
    store: SessionStore
    cookie: str  # alice's signed cookie value
    marker: bytes  # in alice's data only


async def seed(store: SessionStore) -> Seeded:
    app = SessionMiddleware(session_probe_app, secret=SECRET, store=store)
    marker = secrets.token_hex(16)
    status, body, cookies = await call(app, f"/set?user=alice&marker={marker}", [])
    assert status == 200
    assert json.loads(body) == {"user": "alice", "marker": marker}
    cookie = cookies[0].split(b";")[0].partition(b"=")[2].decode()
    status, body, _ = await call(app, "/get", [NAME + b"=" + cookie.encode()])
    assert json.loads(body)["marker"] == marker
    return Seeded(app, store, cookie, marker.encode())


async def check(seeded: Seeded, path: str, cookie_headers: list[bytes]) -> None:
    status, body, set_cookies = await call(seeded.app, path, cookie_headers)
    assert status == 200
    data = json.loads(body)
    assert isinstance(data, dict)
    for header in set_cookies:
        assert header.startswith(NAME + b"=")
        assert len(header) <= MAX_COOKIE_BYTES
    if any(seeded.cookie.encode() in header for header in cookie_headers):
        # Alice's exact cookie is in there: seeing her data is right, and a /flush or
        # /cycle may have ended her key, so she signs in afresh for the next example.
        fresh = await seed(seeded.store)
        seeded.app, seeded.cookie, seeded.marker = fresh.app, fresh.cookie, fresh.marker
        return
    assert seeded.marker not in body, (path, cookie_headers)
    if not seeded.store.stateless:
        # No fuzzed request may end or take over alice's server-side session either.
        assert await seeded.store.load(SIGNER.unsign(seeded.cookie)) is not None


FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=["cookie", "memory"])
async def seeded(request: pytest.FixtureRequest) -> Seeded:
    return await seed(CookieStore() if request.param == "cookie" else MemoryStore())


@pytest.fixture
async def seeded_sqlite(tmp_path: Path) -> AsyncIterator[Seeded]:
    store = SQLStore(str(tmp_path / "sessions.db"))
    yield await seed(store)
    await store.close()


# -- the tests ----------------------------------------------------------------------


@pytest.mark.anyio
@FUZZ
@given(path=st.sampled_from(PATHS), cookie_headers=headers)
async def test_fuzzed_cookie_headers(
    seeded: Seeded, path: str, cookie_headers: list[bytes]
) -> None:
    await check(seeded, path, cookie_headers)


@pytest.mark.anyio
@FUZZ
@given(
    path=st.sampled_from(PATHS),
    edit=edits,
    extra=st.lists(st.one_of(named, soup, signed_garbage), max_size=2),
    position=st.integers(0, 2),
)
async def test_edits_of_alices_cookie(
    seeded: Seeded, path: str, edit: Edit, extra: list[bytes], position: int
) -> None:
    # Everything is drawn up front: a draw inside an async test would end anyio's runner.
    pairs = list(extra)
    pairs.insert(position, edited(seeded.cookie, edit))
    await check(seeded, path, [b"; ".join(pairs)])


@pytest.mark.anyio
@settings(FUZZ, max_examples=60)
@given(path=st.sampled_from(PATHS), cookie_headers=headers, edit=st.none() | edits)
async def test_fuzzed_cookie_headers_sqlite(
    seeded_sqlite: Seeded, path: str, cookie_headers: list[bytes], edit: Edit | None
) -> None:
    if edit is not None:
        cookie_headers = [*cookie_headers, edited(seeded_sqlite.cookie, edit)]
    await check(seeded_sqlite, path, cookie_headers)


@pytest.mark.anyio
async def test_alices_own_cookie_still_works(seeded: Seeded) -> None:
    # The harness itself: the check can see alice's data when it is really there.
    status, body, _ = await call(
        seeded.app, "/get", [b"other=1; " + NAME + b"=" + seeded.cookie.encode()]
    )
    assert status == 200
    assert seeded.marker in body


@pytest.mark.anyio
@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 3000,
        b'{"d":{},"c":Infinity,"a":0}',
        b'{"d":{},"c":1e400,"a":1}',
        b'{"d":{},"c":NaN,"a":1}',
        b'{"d":[],"c":1,"a":1}',
        b'{"d":{},"c":"1","a":1}',
        b'{"d":{},"c":1,"a":1,"x":1e400,"u":"soon","i":5}',
        b"\xff\xfe",
        b"null",
    ],
)
@pytest.mark.parametrize("stamp", [pytest.param(LIVE, id="live"), "\u00b2", "\u00b9" * 3, "0" * 13])
async def test_valid_signature_over_pathological_payloads(payload: bytes, stamp: str) -> None:
    """What a holder of the secret could send to the cookie store: never a 500."""
    seeded = await seed(CookieStore())
    value = SIGNER.sign(f"{stamp}.{b64encode(payload)}").encode("latin-1")
    for path in PATHS:
        await check(seeded, path, [NAME + b"=" + value])
