"""The throttle's counters against the real services: failures, attempts in flight, leases."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from doorman.db import connect, create_engine
from doorman.db.schema import throttle_table
from doorman.exceptions import ConfigError, StoreError
from doorman.stores import (
    BatchCounter,
    Counter,
    MemoryCounter,
    RedisCounter,
    SQLCounter,
    counter_for,
)
from doorman.stores.base import Lease

from .conftest import Clock, make_store
from .helpers import migrated_sqlite, sqlite_threads_settled

pytestmark = pytest.mark.anyio

COUNTER_KINDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]
#: Each test's own (``lease_of_this_test``): its slots are taken and given back under it.
LEASE = Lease.starting(60.0)
WINDOW = 60.0


@pytest.fixture(autouse=True)
def lease_of_this_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slots are counted by generation of leases (60 s here), from the time they are
    granted: a lease made when the module was loaded would have lapsed by now."""
    monkeypatch.setattr(sys.modules[__name__], "LEASE", Lease.starting(60.0))


def redis_client(url: str, **options: Any) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, decode_responses=True, **options)


@pytest.fixture(scope="module", params=COUNTER_KINDS)
async def shared_counter(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Counter | None]:
    """One counter on a real database per module (its engine warm, its statements compiled
    once); ``counter`` empties it for each test. ``None`` for the kinds made per test."""
    if request.param in ("sqlite", "postgres"):
        db = migrated_sqlite(tmp_path_factory.mktemp("counter") / "t.db")
        if request.param == "postgres":
            db = request.getfixturevalue("postgres_url")
        engine = create_engine(db)
        sql_counter = SQLCounter(engine)
        await sql_counter.create_table()  # on the SQLite copy, a no-op
        yield sql_counter
        await engine.dispose()
    else:
        yield None


@pytest.fixture
async def counter(
    shared_counter: Counter | None, request: pytest.FixtureRequest
) -> AsyncIterator[Counter]:
    """A fresh, empty counter of each kind."""
    kind = request.node.callspec.params["shared_counter"]
    if kind == "memory":
        yield MemoryCounter()
    elif isinstance(shared_counter, SQLCounter):
        async with connect(shared_counter.engine, write=True) as connection:
            await connection.execute(throttle_table.delete())
        yield shared_counter
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


async def stored_keys(counter: Counter) -> list[str]:
    """Every key the counter keeps, without a Redis prefix."""
    if isinstance(counter, MemoryCounter):
        return [*counter._counts, *counter._flying]
    if isinstance(counter, SQLCounter):
        async with connect(counter.engine) as connection:
            result = await connection.execute(sa.select(throttle_table.c.key))
            return [str(key) for key in result.scalars()]
    assert isinstance(counter, RedisCounter)
    names = [name async for name in counter.client.scan_iter(match=counter.prefix + "*")]
    return [name.removeprefix(counter.prefix) for name in names]


async def elapse(counter: Counter, clock: Clock, seconds: float) -> None:
    """Let ``seconds`` pass for the counter: Redis keeps its TTLs itself, so there they
    really pass; the others take the time from ``time.time()``, so the clock moves."""
    if isinstance(counter, RedisCounter):
        await asyncio.sleep(seconds)
    else:
        clock.advance(seconds)


async def count(counter: Counter, key: str, times: int = 1, window: float = WINDOW) -> int:
    """``times`` failures: each takes a slot and settles it as counted."""
    failures = 0
    for _ in range(times):
        assert (await counter.acquire(key, 1000, LEASE))[0] == "granted"
        failures = await counter.settle(key, "count", window, LEASE)
    return failures


async def test_slots_are_granted_while_failures_and_flights_are_under_the_limit(
    counter: Counter,
) -> None:
    for _ in range(3):
        assert await counter.acquire("k", 3, LEASE) == ("granted", 0.0)
    assert await counter.acquire("k", 3, LEASE) == ("busy", 0.0)  # only flights in the way
    assert await counter.settle("k", "refund", WINDOW, LEASE) == 0
    assert (await counter.acquire("k", 3, LEASE))[0] == "granted"  # a refund frees a slot
    assert await counter.peek("k") == (0, 0.0)  # flights are not failures


async def test_failures_count_in_one_fixed_window(counter: Counter) -> None:
    assert await count(counter, "k") == 1
    hits, end = await counter.peek("k")
    assert hits == 1
    for expected in (2, 3):
        assert await count(counter, "k") == expected
        assert (await counter.peek("k"))[1] == pytest.approx(end, abs=0.05)  # it does not slide


async def test_failures_at_the_limit_refuse_until_the_window_ends(counter: Counter) -> None:
    await count(counter, "k", 2)
    verdict, end = await counter.acquire("k", 2, LEASE)
    assert verdict == "refused"
    assert end == pytest.approx((await counter.peek("k"))[1], abs=0.05)
    assert (await counter.acquire("k", 3, LEASE))[0] == "granted"  # a higher limit has room
    assert (await counter.acquire("k", 3, LEASE))[0] == "busy"


async def test_a_window_that_ended_starts_again_at_one(counter: Counter, clock: Clock) -> None:
    await count(counter, "k", 2, window=0.2)
    _, first_end = await counter.peek("k")
    await elapse(counter, clock, 0.3)
    assert await counter.peek("k") == (0, 0.0)
    assert (await counter.acquire("k", 2, LEASE))[0] == "granted"
    assert await counter.settle("k", "count", 0.2, LEASE) == 1
    assert (await counter.peek("k"))[1] > first_end


async def test_clear_forgets_the_failures_and_gives_the_slot_back(counter: Counter) -> None:
    await count(counter, "k", 2)
    assert (await counter.acquire("k", 3, LEASE))[0] == "granted"
    assert await counter.settle("k", "clear", WINDOW, LEASE) == 0
    assert await counter.peek("k") == (0, 0.0)
    for _ in range(3):
        assert (await counter.acquire("k", 3, LEASE))[0] == "granted"


async def test_a_lapsed_lease_gives_its_slot_back(counter: Counter, clock: Clock) -> None:
    """A worker that died holding a slot does not hold it for ever.

    The lease is long enough that a loaded machine still asks twice within it (on
    Redis, where the time really passes; elsewhere the clock moves on).
    """
    assert (await counter.acquire("k", 1, Lease.starting(0.5)))[0] == "granted"
    assert (await counter.acquire("k", 1, Lease.starting(0.5)))[0] == "busy"
    await elapse(counter, clock, 1.05)  # its generation's end, then the next one's
    assert (await counter.acquire("k", 1, Lease.starting(0.5)))[0] == "granted"


async def test_a_slot_never_given_back_lapses_while_others_keep_coming(
    counter: Counter, clock: Clock
) -> None:
    """A slot whose worker died used to be held as long as the bucket was busy: every
    grant extended the lease of all its slots. Now it lapses a generation after its own."""
    assert (await counter.acquire("k", 2, Lease.starting(0.5)))[0] == "granted"  # never back
    for _ in range(7):  # 1.05 s of sign-ins, one at a time, each given back
        await elapse(counter, clock, 0.15)
        lease = Lease.starting(0.5)
        assert (await counter.acquire("k", 2, lease))[0] == "granted"
        await counter.settle("k", "refund", WINDOW, lease)
    lease = Lease.starting(0.5)
    assert [(await counter.acquire("k", 2, lease))[0] for _ in range(3)] == [
        "granted",
        "granted",
        "busy",
    ]


async def test_a_slot_is_given_back_under_the_lease_it_was_granted_with(
    counter: Counter,
) -> None:
    """A check that spans the end of a generation gives back its own slot, not one of the
    next generation's: that one's count would then lapse short of a slot still in flight."""
    first = Lease.starting(60.0)
    second, third = (Lease(60.0, first.generation + n) for n in (1, 2))
    assert (await counter.acquire("k", 2, first))[0] == "granted"
    assert (await counter.acquire("k", 2, second))[0] == "granted"
    await counter.settle("k", "refund", WINDOW, first)  # in the second generation
    # In the third, the first's count has lapsed; the second's slot is still in flight.
    assert [(await counter.acquire("k", 2, third))[0] for _ in range(2)] == ["granted", "busy"]


async def test_keys_are_counted_apart(counter: Counter) -> None:
    await count(counter, "one", 2)
    assert (await counter.acquire("one", 2, LEASE))[0] == "refused"
    assert (await counter.acquire("two", 2, LEASE))[0] == "granted"
    assert await counter.peek("two") == (0, 0.0)


async def test_peek_changes_nothing(counter: Counter) -> None:
    assert await counter.peek("k") == (0, 0.0)
    await count(counter, "k")
    for _ in range(3):
        assert (await counter.peek("k"))[0] == 1
    assert await count(counter, "k") == 2


async def test_reset_forgets_failures_but_not_flights(counter: Counter) -> None:
    await count(counter, "k", 2)
    assert (await counter.acquire("k", 3, LEASE))[0] == "granted"
    await counter.reset("k")
    assert await counter.peek("k") == (0, 0.0)
    assert (await counter.acquire("k", 2, LEASE))[0] == "granted"
    assert (await counter.acquire("k", 2, LEASE))[0] == "busy"
    await counter.reset("never-counted")


async def test_concurrent_acquires_grant_exactly_the_limit(counter: Counter) -> None:
    verdicts = await asyncio.gather(*(counter.acquire("k", 5, LEASE) for _ in range(20)))
    assert sorted(verdict for verdict, _ in verdicts) == ["busy"] * 15 + ["granted"] * 5


async def test_concurrent_settles_are_atomic(counter: Counter) -> None:
    for _ in range(10):
        await counter.acquire("k", 10, LEASE)
    failures = await asyncio.gather(
        *(counter.settle("k", "count", WINDOW, LEASE) for _ in range(10))
    )
    assert sorted(failures) == list(range(1, 11))
    assert (await counter.acquire("k", 11, LEASE))[0] == "granted"  # every flight came back


async def test_flights_never_go_below_zero(counter: Counter) -> None:
    await counter.acquire("k", 1, LEASE)
    for _ in range(3):
        await counter.settle("k", "refund", WINDOW, LEASE)
    assert (await counter.acquire("k", 1, LEASE))[0] == "granted"
    assert (await counter.acquire("k", 1, LEASE))[0] == "busy"


async def test_a_refund_for_an_absent_key_stores_nothing(counter: Counter) -> None:
    assert await counter.settle("never-counted", "refund", WINDOW, LEASE) == 0
    assert await stored_keys(counter) == []


async def test_clear_expired(counter: Counter, clock: Clock) -> None:
    await count(counter, "old", window=0.05)
    await counter.acquire("lapsed", 5, Lease.starting(0.05))
    await count(counter, "live")
    await elapse(counter, clock, 0.11)
    removed = await counter.clear_expired()
    if isinstance(counter, SQLCounter):
        assert removed == 3  # "old"'s failures, "lapsed"'s flight and its lock row
    elif isinstance(counter, MemoryCounter):  # Redis: the TTLs did it
        assert removed == 2
    kept = sorted({key.partition("@")[0] for key in await stored_keys(counter)})
    assert kept == ["live", "~live", "~old"]  # leases of 60 s
    assert (await counter.peek("live"))[0] == 1


async def test_a_counter_that_is_down_fails_closed(down_counter: Counter) -> None:
    with pytest.raises(StoreError):
        await down_counter.acquire("k", 5, LEASE)
    with pytest.raises(StoreError):
        await down_counter.settle("k", "count", WINDOW, LEASE)
    with pytest.raises(StoreError):
        await down_counter.peek("k")
    with pytest.raises(StoreError):
        await down_counter.reset("k")
    assert isinstance(down_counter, BatchCounter)
    with pytest.raises(StoreError):
        await down_counter.acquire_all([("k", 5), ("j", 5)], LEASE)
    with pytest.raises(StoreError):
        await down_counter.settle_all([("k", "count"), ("j", "refund")], WINDOW, LEASE)


# Several keys at once: a sign-in's buckets in one round trip


async def test_every_counter_takes_several_keys_at_once(counter: Counter) -> None:
    assert isinstance(counter, BatchCounter)


async def test_acquire_all_takes_a_slot_in_every_key(counter: Counter) -> None:
    assert isinstance(counter, BatchCounter)
    assert await counter.acquire_all([("a", 2), ("b", 1)], LEASE) == ("granted", 0.0)
    assert (await counter.acquire("a", 2, LEASE))[0] == "granted"  # a: one slot left
    assert (await counter.acquire("a", 2, LEASE))[0] == "busy"
    assert (await counter.acquire("b", 1, LEASE))[0] == "busy"  # b: its one slot, taken
    assert await counter.peek("a") == (0, 0.0)  # flights, not failures


async def test_acquire_all_takes_nothing_when_one_key_says_no(counter: Counter) -> None:
    assert isinstance(counter, BatchCounter)
    await count(counter, "full", 2)
    _, end = await counter.peek("full")
    verdict, refused_end = await counter.acquire_all([("free", 1), ("full", 2)], LEASE)
    assert verdict == "refused"
    assert refused_end == pytest.approx(end, abs=0.05)
    assert (await counter.acquire("free", 1, LEASE))[0] == "granted"  # nothing was held
    verdict, _ = await counter.acquire_all([("other", 5), ("free", 1)], LEASE)
    assert verdict == "busy"  # "free" is held: only a flight stands in the way
    assert (await counter.acquire("other", 1, LEASE))[0] == "granted"


async def test_acquire_all_answers_for_the_first_key_that_says_no(counter: Counter) -> None:
    assert isinstance(counter, BatchCounter)
    await count(counter, "full", 1)
    assert (await counter.acquire("held", 1, LEASE))[0] == "granted"
    assert (await counter.acquire_all([("held", 1), ("full", 1)], LEASE))[0] == "busy"
    assert (await counter.acquire_all([("full", 1), ("held", 1)], LEASE))[0] == "refused"


async def test_settle_all_settles_each_key_as_told(counter: Counter) -> None:
    assert isinstance(counter, BatchCounter)
    await count(counter, "counted", 1)
    await count(counter, "refunded", 2)
    await count(counter, "cleared", 3)
    slots = [("counted", 10), ("refunded", 10), ("cleared", 10)]
    assert (await counter.acquire_all(slots, LEASE))[0] == "granted"
    outcomes: list[tuple[str, Any]] = [
        ("counted", "count"),
        ("refunded", "refund"),
        ("cleared", "clear"),
    ]
    assert await counter.settle_all(outcomes, WINDOW, LEASE) == [2, 2, 0]
    assert [(await counter.peek(key))[0] for key, _ in slots] == [2, 2, 0]
    for key, _ in slots:  # every flight came back
        assert (await counter.acquire(key, 3, LEASE))[0] == "granted"


async def test_settle_all_counts_a_new_window_from_one(counter: Counter) -> None:
    assert isinstance(counter, BatchCounter)
    assert await counter.settle_all([("new", "count"), ("absent", "refund")], WINDOW, LEASE) == [
        1,
        0,
    ]
    assert await stored_keys(counter) == ["new"]  # no flight, and nothing for "absent"


async def test_concurrent_acquire_all_in_either_order_grant_exactly_the_limit(
    counter: Counter,
) -> None:
    """Sign-ins whose buckets overlap, listed in either order, neither deadlock nor
    overshoot: 5 slots in "x", however the 40 ask for them."""
    assert isinstance(counter, BatchCounter)
    orders = [[("x", 5), (f"y{n % 4}", 50)] for n in range(20)]
    orders += [[(f"y{n % 4}", 50), ("x", 5)] for n in range(20)]
    verdicts = await asyncio.gather(*(counter.acquire_all(slots, LEASE) for slots in orders))
    assert sorted(verdict for verdict, _ in verdicts) == ["busy"] * 35 + ["granted"] * 5
    granted = [
        slots for slots, (verdict, _) in zip(orders, verdicts, strict=True) if verdict == "granted"
    ]
    settled = (
        counter.settle_all([(key, "count") for key, _ in slots], WINDOW, LEASE) for slots in granted
    )
    await asyncio.gather(*settled)
    assert (await counter.peek("x"))[0] == 5
    assert (await counter.acquire("x", 6, LEASE))[0] == "granted"  # every flight came back


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
            await counter.acquire("k", 1, LEASE)
            await counter.settle("k", "refund", 1, LEASE)
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


async def test_two_engines_on_one_sqlite_file_grant_exactly_the_limit(tmp_path: Path) -> None:
    """As two workers would: each engine writes in its own turn, the file decides."""
    engines = [create_engine(str(tmp_path / "t.db")) for _ in range(2)]
    try:
        counters = [SQLCounter(engine) for engine in engines]
        await counters[0].create_table()
        acquires = (counters[n % 2].acquire("k", 5, LEASE) for n in range(40))
        verdicts = [verdict for verdict, _ in await asyncio.gather(*acquires)]
        assert verdicts.count("granted") == 5
        settles = (counters[n % 2].settle("k", "count", WINDOW, LEASE) for n in range(5))
        assert sorted(await asyncio.gather(*settles)) == [1, 2, 3, 4, 5]
        assert (await counters[1].acquire("k", 5, LEASE))[0] == "refused"
    finally:
        for engine in engines:
            await engine.dispose()


async def test_sign_ins_taking_and_settling_overlapping_keys_at_once_never_deadlock(
    counter: Counter,
) -> None:
    """Takes and settles interleaved, over keys listed in either order: on PostgreSQL each
    locks rows, and two that lock the same two rows in opposite orders wait for each other."""
    assert isinstance(counter, BatchCounter)

    async def sign_in(slots: list[tuple[str, int]], pause: float) -> None:
        assert (await counter.acquire_all(slots, LEASE))[0] == "granted"
        await asyncio.sleep(pause)  # the checks take varied times: settles meet takes
        await counter.settle_all([(key, "refund") for key, _ in reversed(slots)], WINDOW, LEASE)

    keys = [("shared", 100), *((f"own{n}", 100) for n in range(4))]
    sign_ins = [[keys[0], keys[1 + n % 4]] for n in range(20)]
    sign_ins += [[keys[1 + n % 4], keys[0]] for n in range(20)]
    locks_rows = isinstance(counter, SQLCounter) and counter.engine.dialect.name == "postgresql"
    for _round in range(3 if locks_rows else 1):  # a deadlock needs the timing to meet
        pauses = (n % 4 * 0.002 for n in range(len(sign_ins)))
        await asyncio.wait_for(asyncio.gather(*map(sign_in, sign_ins, pauses)), 20)
    assert (await counter.acquire("shared", 1, LEASE))[0] == "granted"  # every flight came back
