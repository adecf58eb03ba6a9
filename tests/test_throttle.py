"""Login throttling: the counter backends against the real services, and the policy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from doorman.auth.throttle import (
    Counter,
    LoginThrottle,
    MemoryCounter,
    RedisCounter,
    SQLCounter,
    counter_for,
)
from doorman.database import connect, create_engine
from doorman.exceptions import ConfigError, StoreError, Throttled
from doorman.schema import throttle_table

from .conftest import make_store
from .helpers import sqlite_threads_settled

pytestmark = pytest.mark.anyio

COUNTER_KINDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


def redis_client(url: str, **options: Any) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, decode_responses=True, **options)


@pytest.fixture(params=COUNTER_KINDS)
async def counter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Counter]:
    """A fresh, empty counter of each kind."""
    if request.param == "memory":
        yield MemoryCounter()
    elif request.param in ("sqlite", "postgres"):
        db = str(tmp_path / "t.db")
        if request.param == "postgres":
            db = request.getfixturevalue("postgres_url")
        engine = create_engine(db)
        sql_counter = SQLCounter(engine)
        await sql_counter.clear_expired()  # creates the tables
        async with connect(engine, write=True) as connection:
            await connection.execute(throttle_table.delete())
        yield sql_counter
        await engine.dispose()
    else:
        client = redis_client(request.getfixturevalue("redis_url"))
        yield RedisCounter(client, prefix=request.getfixturevalue("redis_prefix"))
        await client.aclose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "redis"])
async def down_counter(request: pytest.FixtureRequest) -> AsyncIterator[Counter]:
    """Real drivers pointed where nothing answers."""
    if request.param == "redis":
        client = redis_client("redis://127.0.0.1:1/0", socket_connect_timeout=1, socket_timeout=1)
        yield RedisCounter(client)
        await client.aclose()
        return
    db = "/nonexistent-doorman-dir/t.db"
    if request.param == "postgres":
        db = "postgresql://postgres@127.0.0.1:1/test"
    engine = create_engine(db)
    with sqlite_threads_settled():
        yield SQLCounter(engine)
        await engine.dispose()


# The counter contract


async def test_hit_counts_up_within_one_fixed_window(counter: Counter) -> None:
    hits, end = await counter.hit("k", 60)
    assert hits == 1
    for expected in (2, 3):
        hits, later_end = await counter.hit("k", 60)
        assert hits == expected
        assert later_end == pytest.approx(end, abs=0.05)  # the window does not slide


async def test_keys_are_counted_apart(counter: Counter) -> None:
    await counter.hit("one", 60)
    await counter.hit("one", 60)
    assert (await counter.hit("two", 60))[0] == 1


async def test_a_window_that_ended_starts_again_at_one(counter: Counter) -> None:
    _, first_end = await counter.hit("k", 0.2)
    await counter.hit("k", 0.2)
    await asyncio.sleep(0.3)
    hits, end = await counter.hit("k", 0.2)
    assert hits == 1
    assert end > first_end


async def test_peek_does_not_count(counter: Counter) -> None:
    assert await counter.peek("k") == (0, 0.0)
    _, end = await counter.hit("k", 60)
    for _ in range(3):
        hits, peeked_end = await counter.peek("k")
        assert hits == 1
        assert peeked_end == pytest.approx(end, abs=0.05)
    assert (await counter.hit("k", 60))[0] == 2


async def test_peek_forgets_an_ended_window(counter: Counter) -> None:
    await counter.hit("k", 0.2)
    await asyncio.sleep(0.3)
    assert await counter.peek("k") == (0, 0.0)


async def test_reset(counter: Counter) -> None:
    await counter.hit("k", 60)
    await counter.hit("k", 60)
    await counter.reset("k")
    assert await counter.peek("k") == (0, 0.0)
    assert (await counter.hit("k", 60))[0] == 1
    await counter.reset("never-counted")


async def test_concurrent_hits_are_atomic(counter: Counter) -> None:
    results = await asyncio.gather(*(counter.hit("k", 60) for _ in range(20)))
    assert sorted(hits for hits, _ in results) == list(range(1, 21))
    ends = [end for _, end in results]
    assert max(ends) - min(ends) < 0.1  # one window for all of them
    assert (await counter.peek("k"))[0] == 20


async def test_clear_expired(counter: Counter) -> None:
    await counter.hit("old", 0.1)
    await counter.hit("live", 60)
    await asyncio.sleep(0.2)
    removed = await counter.clear_expired()
    assert removed == (0 if isinstance(counter, RedisCounter) else 1)  # Redis: the TTL did it
    assert await counter.peek("old") == (0, 0.0)
    assert (await counter.peek("live"))[0] == 1


async def test_release_takes_one_hit_back_in_the_same_window(counter: Counter) -> None:
    _, end = await counter.hit("k", 60)
    await counter.hit("k", 60)
    await counter.hit("k", 60)
    await counter.release("k")
    hits, peeked_end = await counter.peek("k")
    assert hits == 2
    assert peeked_end == pytest.approx(end, abs=0.05)  # the window does not move
    hits, hit_end = await counter.hit("k", 60)
    assert hits == 3
    assert hit_end == pytest.approx(end, abs=0.05)


async def test_release_never_goes_below_zero(counter: Counter) -> None:
    await counter.hit("k", 60)
    for _ in range(3):
        await counter.release("k")
    assert (await counter.peek("k"))[0] == 0
    assert (await counter.hit("k", 60))[0] == 1


async def test_concurrent_releases_are_atomic_and_stop_at_zero(counter: Counter) -> None:
    for _ in range(10):
        await counter.hit("k", 60)
    await asyncio.gather(*(counter.release("k") for _ in range(15)))
    assert (await counter.peek("k"))[0] == 0
    assert (await counter.hit("k", 60))[0] == 1


async def test_release_of_an_absent_key_stores_nothing(counter: Counter) -> None:
    await counter.release("never-counted")
    assert await counter.peek("never-counted") == (0, 0.0)
    assert await stored_keys(counter) == []
    assert (await counter.hit("never-counted", 60))[0] == 1


async def test_release_of_an_ended_window_does_nothing(counter: Counter) -> None:
    await counter.hit("k", 0.2)
    await counter.hit("k", 0.2)
    await asyncio.sleep(0.3)
    await counter.release("k")
    assert await counter.peek("k") == (0, 0.0)
    assert (await counter.hit("k", 60))[0] == 1


async def test_a_counter_that_is_down_fails_closed(down_counter: Counter) -> None:
    throttle = LoginThrottle(down_counter)
    for step in (throttle.attempt, throttle.check, throttle.succeeded):
        with pytest.raises(StoreError):
            await step("alice", "192.0.2.1")
    with pytest.raises(StoreError):
        await down_counter.release("k")


# The policy


async def fail(throttle: LoginThrottle, username: str, address: str | None, times: int) -> None:
    """``times`` sign-ins with a wrong password: counted, and never given back."""
    for _ in range(times):
        await throttle.attempt(username, address)


async def test_the_attempt_after_n_failures_is_refused() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3, window=900)
    await fail(throttle, "alice", "192.0.2.1", 3)
    with pytest.raises(Throttled) as caught:
        await throttle.attempt("alice", "192.0.2.2")  # from anywhere
    assert caught.value.status_code == 429
    assert 1 <= caught.value.retry_after <= 900
    assert str(caught.value) == "Too many failed sign-in attempts; try again in 15 minutes."
    assert "alice" not in str(caught.value)


async def test_a_burst_of_parallel_attempts_gets_exactly_the_limit(counter: Counter) -> None:
    throttle = LoginThrottle(counter, per_account=5, per_address=20)
    attempts = (throttle.attempt("alice", "192.0.2.1") for _ in range(20))
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(result is None for result in results) == 5
    assert sum(isinstance(result, Throttled) for result in results) == 15
    # The 15 refused by the account limit were given back to the address: 15 more fit.
    for number in range(15):
        await throttle.attempt(f"user{number}", "192.0.2.1")
    with pytest.raises(Throttled):
        await throttle.attempt("someone-new", "192.0.2.1")


async def test_check_peeks_without_counting() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2)
    for _ in range(5):
        await throttle.check("alice", "192.0.2.1")
    await fail(throttle, "alice", "192.0.2.1", 2)
    with pytest.raises(Throttled) as caught:
        await throttle.check("alice", "192.0.2.1")  # the next attempt would be refused
    assert 1 <= caught.value.retry_after <= 900


async def test_the_refusal_ends_with_the_window() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=1, window=0.2)
    await fail(throttle, "alice", None, 1)
    with pytest.raises(Throttled) as caught:
        await throttle.attempt("alice", None)
    assert caught.value.retry_after == 1  # rounded up, at least 1
    assert str(caught.value) == "Too many failed sign-in attempts; try again in 1 second."
    await asyncio.sleep(0.3)
    await throttle.attempt("alice", None)


async def test_refused_attempts_do_not_make_the_wait_longer() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=1, window=0.4)
    await fail(throttle, "alice", None, 1)
    for _ in range(5):
        await asyncio.sleep(0.05)
        with pytest.raises(Throttled):
            await throttle.attempt("alice", None)
    await asyncio.sleep(0.3)  # 0.55s after the first attempt: its window has ended
    await throttle.attempt("alice", None)


async def test_other_accounts_from_other_addresses_are_unaffected() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3)
    await fail(throttle, "alice", "192.0.2.1", 3)
    await throttle.attempt("bob", "192.0.2.99")
    await throttle.attempt("bob", "192.0.2.99")


async def test_one_address_trying_many_accounts_hits_the_address_limit() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3, per_address=5)
    for number in range(5):
        await fail(throttle, f"user{number}", "203.0.113.7", 1)
    with pytest.raises(Throttled) as by_address:
        await throttle.attempt("someone-new", "203.0.113.7")
    await throttle.attempt("someone-new", "203.0.113.8")
    await fail(throttle, "carol", "198.51.100.1", 3)
    with pytest.raises(Throttled) as by_account:
        await throttle.attempt("carol", "198.51.100.1")
    assert str(by_address.value) == str(by_account.value)  # which limit is not revealed


async def test_a_refusal_counts_only_against_the_limit_that_refused_it() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2, per_address=5)
    await fail(throttle, "alice", "192.0.2.1", 2)  # the address has 2
    for _ in range(10):  # a client retrying a locked account
        with pytest.raises(Throttled):
            await throttle.attempt("alice", "192.0.2.1")
    await fail(throttle, "bob", "192.0.2.1", 2)  # ... does not use up its address's budget
    await fail(throttle, "carol", "192.0.2.1", 1)
    for _ in range(3):  # and an address over its limit does not lock the accounts it tries
        with pytest.raises(Throttled):
            await throttle.attempt("dave", "192.0.2.1")
    await fail(throttle, "dave", "192.0.2.2", 2)


async def test_success_clears_the_account_and_gives_the_address_its_attempt_back() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=3, per_address=4)
    await fail(throttle, "alice", "192.0.2.1", 2)
    await throttle.attempt("alice", "192.0.2.1")
    await throttle.succeeded("alice", "192.0.2.1")
    await fail(throttle, "alice", "192.0.2.2", 3)  # three more: the count started again
    with pytest.raises(Throttled):
        await throttle.attempt("alice", "192.0.2.3")
    await fail(throttle, "bob", "192.0.2.1", 2)  # the two failures kept: 4, the success not
    with pytest.raises(Throttled):
        await throttle.attempt("carol", "192.0.2.1")


async def test_signing_in_from_one_address_never_uses_up_its_budget(counter: Counter) -> None:
    """An office behind one NAT signs in all day without locking itself out."""
    throttle = LoginThrottle(counter, per_account=5, per_address=3)
    for number in range(12):
        username = f"user{number % 4}"
        await throttle.attempt(username, "192.0.2.1")
        await throttle.succeeded(username, "192.0.2.1")
    await throttle.check("anyone", "192.0.2.1")


async def test_an_admin_can_unlock_an_account() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2)
    await fail(throttle, "alice", None, 2)
    with pytest.raises(Throttled):
        await throttle.attempt("alice", None)
    await throttle.reset("ALICE")
    await throttle.attempt("alice", None)
    await throttle.attempt("alice", None)


FULLWIDTH_ALICE = "\uff21\uff4c\uff49\uff43\uff45"


@pytest.mark.parametrize("variant", ["Alice", "ALICE", "alice", FULLWIDTH_ALICE])
async def test_case_and_width_variants_share_a_count(variant: str) -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2)
    await fail(throttle, "alice", None, 1)
    await fail(throttle, variant, None, 1)
    with pytest.raises(Throttled):
        await throttle.attempt("alice", None)


async def test_ipv6_addresses_are_counted_per_64() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=0, per_address=2)
    await fail(throttle, "a", "2001:db8:1:2::1", 1)
    await fail(throttle, "b", "2001:db8:1:2:ffff:ffff:ffff:ffff", 1)
    with pytest.raises(Throttled):
        await throttle.attempt("c", "2001:0db8:0001:0002::abcd")
    await throttle.attempt("c", "2001:db8:1:3::1")  # the next /64


async def test_ipv4_is_counted_per_address_and_mapped_ipv4_with_it() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=0, per_address=2)
    await fail(throttle, "a", "192.0.2.1", 1)
    await throttle.attempt("b", "192.0.2.2")
    await fail(throttle, "b", "::ffff:192.0.2.1", 1)
    with pytest.raises(Throttled):
        await throttle.attempt("c", "192.0.2.1")


async def test_an_unparsable_address_is_counted_as_it_is() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=0, per_address=1)
    await fail(throttle, "a", "unix:/run/app.sock", 1)
    with pytest.raises(Throttled):
        await throttle.attempt("b", "unix:/run/app.sock")
    await throttle.attempt("b", "unix:/run/other.sock")


async def test_without_an_address_only_the_account_limit_applies() -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2, per_address=1)
    await fail(throttle, "alice", None, 1)
    await fail(throttle, "bob", None, 1)
    await throttle.attempt("carol", None)
    await fail(throttle, "alice", None, 1)
    with pytest.raises(Throttled):
        await throttle.attempt("alice", None)


async def test_a_limit_of_zero_is_off() -> None:
    no_account_limit = LoginThrottle(MemoryCounter(), per_account=0, per_address=1000)
    for number in range(30):
        await fail(no_account_limit, "alice", f"192.0.2.{number}", 1)
    no_address_limit = LoginThrottle(MemoryCounter(), per_account=1000, per_address=0)
    for number in range(30):
        await fail(no_address_limit, f"user{number}", "192.0.2.1", 1)
    counter = MemoryCounter()
    unlimited = LoginThrottle(counter, per_account=0, per_address=0)
    await fail(unlimited, "alice", "192.0.2.1", 50)
    await unlimited.succeeded("alice", "192.0.2.1")
    assert counter._counts == {}


@pytest.mark.parametrize(
    "options",
    [
        {"per_account": -1},
        {"per_address": -5},
        {"per_account": 2.5},
        {"per_address": True},
        {"per_account": "5"},
        {"window": 0},
        {"window": -1.0},
        {"window": math.inf},
        {"window": math.nan},
        {"window": "900"},
        {"window": True},
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        LoginThrottle(MemoryCounter(), **options)
    name, value = next(iter(options.items()))
    assert f"throttle_{name}={value!r}" in str(caught.value)


async def test_reaching_a_limit_is_logged_once_without_the_username(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = LoginThrottle(MemoryCounter(), per_account=2, per_address=100)
    with caplog.at_level(logging.WARNING, logger="doorman.security"):
        for _ in range(5):
            with contextlib.suppress(Throttled):
                await throttle.attempt("hunter2-typed-as-username", "192.0.2.1")
    assert len(caplog.records) == 1
    assert "account" in caplog.text
    assert "192.0.2.1" in caplog.text
    assert "hunter2" not in caplog.text


# Shared between workers


async def test_two_app_instances_share_counts_through_one_sqlite_file(tmp_path: Path) -> None:
    first = create_engine(str(tmp_path / "t.db"))
    second = create_engine(str(tmp_path / "t.db"))
    try:
        worker_a = LoginThrottle(SQLCounter(first), per_account=3)
        worker_b = LoginThrottle(SQLCounter(second), per_account=3)
        await fail(worker_a, "alice", "192.0.2.1", 2)
        await fail(worker_b, "alice", "192.0.2.1", 1)
        for worker in (worker_a, worker_b):
            with pytest.raises(Throttled):
                await worker.attempt("Alice", "192.0.2.9")
        await worker_b.succeeded("alice", "192.0.2.1")
        await worker_a.attempt("alice", "192.0.2.1")
    finally:
        await first.dispose()
        await second.dispose()


@pytest.mark.redis
async def test_two_app_instances_share_counts_through_one_redis(
    redis_url: str, redis_prefix: str
) -> None:
    first, second = redis_client(redis_url), redis_client(redis_url)
    try:
        worker_a = LoginThrottle(RedisCounter(first, prefix=redis_prefix), per_account=3)
        worker_b = LoginThrottle(RedisCounter(second, prefix=redis_prefix), per_account=3)
        await fail(worker_a, "alice", "192.0.2.1", 2)
        await fail(worker_b, "alice", "192.0.2.1", 1)
        for worker in (worker_a, worker_b):
            with pytest.raises(Throttled):
                await worker.attempt("alice", "192.0.2.9")
        await worker_b.reset("alice")
        await worker_a.attempt("alice", "192.0.2.1")
    finally:
        await first.aclose()
        await second.aclose()


# Stored keys


async def stored_keys(counter: Counter) -> list[str]:
    if isinstance(counter, MemoryCounter):
        return list(counter._counts)
    if isinstance(counter, SQLCounter):
        async with connect(counter.engine) as connection:
            result = await connection.execute(sa.select(throttle_table.c.key))
            return [str(key) for key in result.scalars()]
    assert isinstance(counter, RedisCounter)
    return [name async for name in counter.client.scan_iter(match=counter.prefix + "*")]


async def test_stored_keys_hold_neither_username_nor_address(counter: Counter) -> None:
    throttle = LoginThrottle(counter)
    await throttle.attempt("Alice.Smith@example.com", "198.51.100.23")
    await throttle.attempt("Alice.Smith@example.com", "2001:db8:abcd:12::7")
    keys = await stored_keys(counter)
    assert len(keys) == 3
    secrets_in_keys = ["alice", "smith", "example", "198.51", "100.23", "2001", "db8", "abcd"]
    for key in keys:
        assert not any(part in key.lower() for part in secrets_in_keys), key
    bare = [key.removeprefix(getattr(counter, "prefix", "")) for key in keys]
    assert sorted(key[:2] for key in bare) == ["a:", "c:", "c:"]


async def test_a_secret_keys_the_hashes() -> None:
    plain, keyed, same, rotated = (MemoryCounter() for _ in range(4))
    await LoginThrottle(plain).attempt("alice", "192.0.2.1")
    await LoginThrottle(keyed, secret="s" * 32).attempt("alice", "192.0.2.1")
    await LoginThrottle(same, secret=b"s" * 32).attempt("alice", "192.0.2.1")
    await LoginThrottle(rotated, secret=["s" * 32, "o" * 32]).attempt("alice", "192.0.2.1")
    assert set(plain._counts).isdisjoint(keyed._counts)
    assert set(keyed._counts) == set(same._counts) == set(rotated._counts)  # the newest


async def test_the_secret_itself_is_not_the_hash_key() -> None:
    counter = MemoryCounter()
    await LoginThrottle(counter, per_address=0, secret="s" * 32).attempt("alice", None)
    with_the_raw_secret = hmac.new(b"s" * 32, b"alice", hashlib.sha256).hexdigest()[:40]
    assert list(counter._counts) != ["a:" + with_the_raw_secret]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        LoginThrottle(MemoryCounter(), secret="short")


# Picking the counter for the session store


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("memory", MemoryCounter),
        ("sqlite", SQLCounter),
        pytest.param("postgres", SQLCounter, marks=pytest.mark.postgres),
        pytest.param("redis", RedisCounter, marks=pytest.mark.redis),
    ],
)
async def test_counts_live_beside_the_sessions(
    kind: str, expected: type, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = await make_store(kind, request, tmp_path)
    try:
        counter = counter_for(store)
        assert type(counter) is expected
        if isinstance(counter, SQLCounter):
            assert counter.engine is store.engine  # type: ignore[attr-defined]
        if isinstance(counter, RedisCounter):
            assert counter.client is store.client  # type: ignore[attr-defined]
            assert counter.prefix == request.getfixturevalue("redis_prefix") + "throttle:"
            await counter.hit("k", 60)
            await counter.reset("k")
    finally:
        await store.close()


@pytest.mark.redis
@pytest.mark.parametrize(
    ("session_prefix", "throttle_prefix"),
    [("doorman:session:", "doorman:throttle:"), ("myapp:", "myapp:throttle:")],
)
async def test_the_redis_prefix_follows_the_session_prefix(
    session_prefix: str, throttle_prefix: str
) -> None:
    from doorman.stores.redis import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0", prefix=session_prefix)  # never connects
    try:
        counter = counter_for(store)
        assert isinstance(counter, RedisCounter)
        assert counter.prefix == throttle_prefix
    finally:
        await store.close()


async def test_a_stateless_store_needs_the_users_database(tmp_path: Path) -> None:
    from doorman.stores import CookieStore

    with pytest.raises(ConfigError, match="stateless session store"):
        counter_for(CookieStore())
    with pytest.raises(ConfigError):
        counter_for(object())
    engine = create_engine(str(tmp_path / "t.db"))
    try:
        counter = counter_for(CookieStore(), engine=engine)
        assert isinstance(counter, SQLCounter)
        assert counter.engine is engine
    finally:
        await engine.dispose()
