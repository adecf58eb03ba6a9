"""The session cookie's format: as short as Starlette's, and the format before still read.

The cookies in ``BEFORE`` were made by doorman as it was before issue 14 (commit
b2d5f36, ``SessionMiddleware(secret=BEFORE_SECRET, store=CookieStore())``, ``max_age``
a century, so that they outlive this test), not rebuilt by hand.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import itsdangerous
import pytest
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware

from doorman import BadSignature, CookieStore, MemoryStore, SessionMiddleware, Signer
from doorman._types import Receive, Scope, Send
from doorman.sessions import SessionSigner
from doorman.sessions.signer import REMEMBERED, REMEMBERED_LENGTH
from doorman.signing import b64decode
from doorman.stores import SessionStore

from .conftest import SECRET
from .helpers import COOKIE, client, json_app, only_set_cookie, session_signer

BEFORE_SECRET = "the-format-before-issue-14-" + "s" * 24
BEFORE = {
    # {"count": 1}, saved once
    "count": "4950096760.eyJkIjp7ImNvdW50IjoxfSwiYyI6MTc5NjQ5Njc2MCwiYSI6MTc5NjQ5Njc2MH0=."
    "cxDf2a7mXY--JZHjBU9TU1EQjw57pB1rd5-McrAZWAo",
    # {"user": "alice"} after cycle_key(), so with the session id a stateless session gets
    "cycled": "4950096760.eyJkIjp7InVzZXIiOiJhbGljZSJ9LCJjIjoxNzk2NDk2NzYwLCJhIjoxNzk2NDk2NzYwLC"
    "JpIjoiWGxxQ21nbVhHOEdjQlYyTCJ9.bOEc4axEYxtprdOKDI0aLWntSDGxbyIfE3TxM8XziOI",
    # {"count": 1} with max_age=1: long expired
    "expired": "1796496761.eyJkIjp7ImNvdW50IjoxfSwiYyI6MTc5NjQ5Njc2MCwiYSI6MTc5NjQ5Njc2MH0=."
    "PkJVlAWug-XKQi5zVjveSReDfHrq0uNzL2XGa3Eiu_c",
}


def counter(scope: Scope, session: Any) -> Any:
    if scope["path"] == "/count":
        session["count"] = session.get("count", 0) + 1
    return dict(session)


def app(secret: str | list[str] = BEFORE_SECRET, **options: Any) -> SessionMiddleware:
    options.setdefault("store", CookieStore())
    return SessionMiddleware(json_app(counter), secret=secret, **options)


def parts(cookie: str) -> tuple[int, dict[str, Any], str]:
    """A cookie-store cookie's expiry, record and MAC, read without the middleware."""
    key, _, mac = cookie.rpartition(".")
    packed = b64decode(key)
    return int.from_bytes(packed[:4], "big"), json.loads(packed[4:]), mac


# -- size ---------------------------------------------------------------------------


async def first_cookie(middleware: Any) -> str:
    """``name=value`` of the cookie a middleware sets for ``{"count": 1}``."""

    async def count(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"]["count"] = 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with client(middleware(count)) as http:
        response = await http.get("/")
    return response.headers["set-cookie"].partition(";")[0]


@pytest.mark.anyio
async def test_the_cookie_for_a_count_is_no_longer_than_starlettes() -> None:
    ours = await first_cookie(lambda inner: SessionMiddleware(inner, secret_key=SECRET))
    theirs = await first_cookie(lambda inner: StarletteSessionMiddleware(inner, secret_key=SECRET))
    assert ours.startswith("session=") and theirs.startswith("session=")
    assert len(ours) <= len(theirs) == 59
    named = await first_cookie(lambda inner: SessionMiddleware(inner, secret=SECRET))
    assert len(named) == len(ours) + len("doorman_") == 67  # the same value, a longer name


@pytest.mark.anyio
async def test_a_cookie_holds_its_expiry_the_data_and_a_128_bit_mac() -> None:
    before = int(time.time())
    async with client(app(max_age=3600)) as http:
        cookie = only_set_cookie(await http.get("/count"))[1]
    expiry, record, mac = parts(cookie)
    assert before + 3600 <= expiry <= int(time.time()) + 3600
    assert record == {"d": {"count": 1}}  # no times: with no timeout set, none is needed
    assert len(mac) == 22
    assert "=" not in cookie


@pytest.mark.anyio
@pytest.mark.parametrize("option", ["idle_timeout", "absolute_timeout"])
async def test_a_timeout_puts_the_times_it_needs_in_the_cookie(option: str) -> None:
    async with client(app(**{option: 600})) as http:
        now = int(time.time())
        cookie = only_set_cookie(await http.get("/count"))[1]
    record = parts(cookie)[1]
    assert record["d"] == {"count": 1}
    assert now <= record["c"] == record["a"] <= now + 1


@pytest.mark.anyio
@pytest.mark.parametrize("option", ["idle_timeout", "absolute_timeout"])
async def test_a_cookie_without_times_does_not_count_once_a_timeout_is_set(
    option: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with client(app()) as http:
        await http.get("/count")
        cookies = http.cookies
    async with client(app(**{option: 600}), cookies=cookies) as http:
        with caplog.at_level(logging.INFO, logger="doorman.sessions"):
            assert (await http.get("/")).json() == {}  # its age cannot be known
        assert "without its times" in caplog.text
        assert (await http.get("/count")).json() == {"count": 1}


# -- the format before issue 14 -------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "data"), [("count", {"count": 1}), ("cycled", {"user": "alice"})])
async def test_a_cookie_of_the_format_before_is_read(name: str, data: dict[str, Any]) -> None:
    async with client(app(), cookies={COOKIE: BEFORE[name]}) as http:
        read = await http.get("/")
        assert read.json() == data
        assert read.headers.get_list("set-cookie") == []  # reading alone does not re-sign


@pytest.mark.anyio
async def test_a_cookie_of_the_format_before_is_written_anew_on_the_next_save() -> None:
    async with client(app(), cookies={COOKIE: BEFORE["count"]}) as http:
        written = await http.get("/count")
        assert written.json() == {"count": 2}
        new = only_set_cookie(written)[1]
        assert len(new) < len(BEFORE["count"]) / 2
        assert parts(new)[1] == {"d": {"count": 2}}
    async with client(app(), cookies={COOKIE: new}) as http:
        assert (await http.get("/")).json() == {"count": 2}


@pytest.mark.anyio
async def test_a_cycled_cookie_of_the_format_before_keeps_its_session_id() -> None:
    async with client(app(), cookies={COOKIE: BEFORE["cycled"]}) as http:
        new = only_set_cookie(await http.get("/count"))[1]
    assert parts(new)[1] == {"d": {"user": "alice", "count": 1}, "i": "XlqCmgmXG8GcBV2L"}


def tampered(cookie: str) -> list[str]:
    key, _, mac = cookie.rpartition(".")
    stamp, _, payload = key.partition(".")
    return [
        f"{int(stamp) + 1}.{payload}.{mac}",  # a later expiry
        f"{stamp}.{payload[:-2]}fQ==.{mac}",  # other data
        f"{key}.{mac[:-1]}{'B' if mac[-1] != 'B' else 'C'}",  # another MAC
        f"{key}.{mac[:22]}",  # the MAC cut to the new format's length
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("cookie", [BEFORE["expired"], *tampered(BEFORE["count"])])
async def test_a_cookie_of_the_format_before_that_expired_or_was_edited_is_refused(
    cookie: str,
) -> None:
    async with client(app(), cookies={COOKIE: cookie}) as http:
        assert (await http.get("/")).json() == {}


@pytest.mark.anyio
async def test_a_cookie_of_the_format_before_needs_one_of_the_secrets() -> None:
    async with client(app(secret=SECRET), cookies={COOKIE: BEFORE["count"]}) as http:
        assert (await http.get("/")).json() == {}
    rotated = app(secret=[SECRET, BEFORE_SECRET])
    async with client(rotated, cookies={COOKIE: BEFORE["count"]}) as http:
        assert (await http.get("/")).json() == {"count": 1}
        new = only_set_cookie(await http.get("/count"))[1]
    assert session_signer(SECRET).unsign(new)  # the newest secret, the new format


@pytest.mark.anyio
async def test_a_server_side_session_signed_before_is_read_and_signed_anew() -> None:
    store = MemoryStore()
    async with client(app(store=store)) as http:
        await http.get("/count")
        key = session_signer(BEFORE_SECRET).unsign(http.cookies[COOKIE])
    # What doorman signed before issue 14: the same key, the whole MAC.
    before = Signer(BEFORE_SECRET, salt="doorman.session").sign(key)
    assert len(before.rpartition(".")[2]) == 43
    async with client(app(store=store), cookies={COOKIE: before}) as http:
        assert (await http.get("/")).json() == {"count": 1}
        new = only_set_cookie(await http.get("/count"))[1]
    assert new == session_signer(BEFORE_SECRET).sign(key)  # same session, the short MAC


# -- the signature ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("store", [CookieStore, MemoryStore])
async def test_an_unchanged_key_keeps_its_cookie_and_a_changed_one_is_signed(
    store: type[SessionStore],
) -> None:
    async with client(app(store=store())) as http:
        first = only_set_cookie(await http.get("/count"))[1]
        second = only_set_cookie(await http.get("/count"))[1]
    if store is MemoryStore:
        assert second == first  # the same id: the cookie it came with, not signed again
    else:
        assert second != first  # the data is the key
    assert session_signer(BEFORE_SECRET).unsign(second)


@pytest.mark.anyio
@pytest.mark.parametrize("salt", ["doorman.csrf", "doorman.next", "doorman.device", "doorman.gate"])
async def test_a_value_signed_for_another_purpose_is_no_session(salt: str) -> None:
    async with client(app()) as http:
        key = session_signer(BEFORE_SECRET).unsign(only_set_cookie(await http.get("/count"))[1])
    for digest_size in (16, 32):
        other = Signer(BEFORE_SECRET, salt=salt, digest_size=digest_size).sign(key)
        async with client(app(), cookies={COOKIE: other}) as http:
            assert (await http.get("/")).json() == {}


def test_a_starlette_signature_is_no_doorman_one() -> None:
    value = itsdangerous.TimestampSigner(BEFORE_SECRET).sign(b"eyJjb3VudCI6IDF9").decode()
    with pytest.raises(BadSignature):
        SessionSigner(BEFORE_SECRET).unsign(value)


# -- remembered cookies ----------------------------------------------------------------


def test_a_verified_cookie_is_remembered_and_a_bad_one_is_not() -> None:
    signer = SessionSigner(SECRET)
    cookie = signer.sign("some-key")
    assert signer.unsign_newest(cookie) == ("some-key", True)
    assert signer._verified == {cookie: ("some-key", True)}
    forged = cookie[:-1] + ("A" if cookie[-1] != "A" else "B")
    for _ in range(2):  # refused each time, never remembered
        with pytest.raises(BadSignature):
            signer.unsign_newest(forged)
    assert list(signer._verified) == [cookie]


def test_remembered_cookies_are_bounded_oldest_first() -> None:
    signer = SessionSigner(SECRET)
    cookies = [signer.sign(f"key-{n}") for n in range(REMEMBERED + 5)]
    for cookie in cookies:
        signer.unsign(cookie)
    assert list(signer._verified) == cookies[5:]
    long = signer.sign("k" * REMEMBERED_LENGTH)
    assert signer.unsign(long) == "k" * REMEMBERED_LENGTH  # verified, not remembered
    assert long not in signer._verified


def test_a_remembered_cookie_still_says_which_secret_signed_it() -> None:
    rotated = SessionSigner([SECRET, BEFORE_SECRET])
    old = SessionSigner(BEFORE_SECRET).sign("some-key")
    for _ in range(2):
        assert rotated.unsign_newest(old) == ("some-key", False)  # so it is signed anew
    assert rotated.unsign_newest(BEFORE["count"])[1] is False  # the format before, too


# -- the store remembers what it decoded ---------------------------------------------------


@pytest.mark.parametrize("format", ["now", "before"])
def test_a_remembered_key_still_ends_at_its_expiry(
    format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, now = CookieStore(), time.time()
    if format == "now":
        key = store.save_nowait(None, '{"d":{"n":1}}', now + 60)
    else:  # the format before issue 14: "<expiry>.<standard base64>"
        key = f"{int(now) + 60}.eyJkIjp7Im4iOjF9fQ=="
    assert store.load_nowait(key) == store.load_nowait(key) == '{"d":{"n":1}}'
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert store.load_nowait(key) is None
    assert store.load_nowait(key) is None, "and stays gone"


def test_keys_that_are_not_keys_load_nothing_remembered_or_not() -> None:
    store = CookieStore()
    for key in ["", "!!", "x.y", "123.!!", "AAAA", "_w" * 9, "99999999999999.e30="]:
        assert store.load_nowait(key) is None and store.load_nowait(key) is None, key


def test_the_store_remembers_a_bounded_number_of_keys() -> None:
    store, until = CookieStore(), time.time() + 60
    keys = [store.save_nowait(None, f'{{"d":{{"n":{n}}}}}', until) for n in range(REMEMBERED + 50)]
    assert [store.load_nowait(key) for key in keys] == [
        f'{{"d":{{"n":{n}}}}}' for n in range(REMEMBERED + 50)
    ]
    assert len(store._decoded) == REMEMBERED
    too_long = store.save_nowait(None, '{"d":{"s":"' + "x" * REMEMBERED_LENGTH + '"}}', until)
    assert store.load_nowait(too_long) is not None and too_long not in store._decoded
