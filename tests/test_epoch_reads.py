"""PostgreSQL's epoch reads: a read answers a request only if it started after the request arrived.

``doorman.db.epoch_reads`` shares one read of every epoch row among the requests
that arrived before it started, and none that arrived after. These tests drive
it with a fake connection whose reads start and finish on cue, so that each
ordering is made to happen rather than hoped for; ``tests/test_cache.py`` and
``tests/test_scale.py`` check the same promise on a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from doorman.db.epoch_reads import EpochReads, Fetch, request_arrived, request_done
from doorman.exceptions import StoreError

pytestmark = pytest.mark.anyio


class Database:
    """Epoch rows whose reads wait for ``release()``; it records what happened, in order."""

    def __init__(self) -> None:
        self.rows = {"epoch:accounts": b"a1", "epoch:sessions": b"s1"}
        self.events: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Fetch]:
        self.events.append("connect")

        async def fetch() -> dict[str, bytes]:
            self.events.append("read")
            seen = dict(self.rows)  # a read sees what was committed when it started
            await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            return seen

        try:
            yield fetch
        finally:
            self.events.append("disconnect")

    def reads(self) -> int:
        return self.events.count("read")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_outside_a_request_each_call_waits_for_a_read_of_its_own() -> None:
    db = Database()
    reads = EpochReads(db.reading)
    assert await reads.get("epoch:accounts") == b"a1"
    db.rows["epoch:accounts"] = b"a2"
    assert await reads.get("epoch:accounts") == b"a2"
    assert db.reads() == 2


async def test_calls_in_one_turn_share_one_read_of_every_epoch() -> None:
    db = Database()
    reads = EpochReads(db.reading)
    found = await asyncio.gather(
        *(reads.get(name) for name in ["epoch:accounts", "epoch:sessions"] * 10)
    )
    assert found == [b"a1", b"s1"] * 10
    assert db.reads() == 1
    assert await reads.get("epoch:missing") == b""


async def test_a_request_uses_a_read_that_started_after_it_arrived() -> None:
    db = Database()
    reads = EpochReads(db.reading)

    async def request() -> tuple[bytes, bytes]:
        request_arrived()
        sessions = await reads.get("epoch:sessions")
        return sessions, await reads.get("epoch:accounts")  # the same read answers

    assert await asyncio.create_task(request()) == (b"s1", b"a1")
    assert db.reads() == 1


async def test_a_change_committed_before_a_request_arrived_is_seen_by_it() -> None:
    """A read under way when a request arrives started before it: the request waits for the next."""
    db = Database()
    reads = EpochReads(db.reading)
    db.gate.clear()
    early = asyncio.create_task(reads.get("epoch:accounts"))
    await settle()
    assert db.reads() == 1  # under way, having seen a1
    db.rows["epoch:accounts"] = b"a2"  # committed now, before the request below arrives

    async def request() -> bytes:
        request_arrived()
        return await reads.get("epoch:accounts")

    late = asyncio.create_task(request())
    await settle()
    db.gate.set()
    assert await early == b"a1"
    assert await late == b"a2"
    assert db.reads() == 2


async def test_requests_that_arrived_before_a_read_started_share_it() -> None:
    db = Database()
    reads = EpochReads(db.reading)
    db.gate.clear()
    started = asyncio.Event()

    async def request() -> bytes:
        request_arrived()
        await started.wait()  # arrived; asks only once a read is under way
        return await reads.get("epoch:accounts")

    waiting = [asyncio.create_task(request()) for _ in range(5)]
    await settle()
    first = asyncio.create_task(reads.get("epoch:sessions"))  # starts the read
    await settle()
    started.set()
    await settle()
    db.gate.set()
    assert await asyncio.gather(*waiting) == [b"a1"] * 5
    assert await first == b"s1"
    assert db.reads() == 1


async def test_the_connection_is_given_back_before_the_last_answer() -> None:
    db = Database()
    reads = EpochReads(db.reading)
    await reads.get("epoch:accounts")
    db.events.append("answered")
    assert db.events == ["connect", "read", "disconnect", "answered"]


async def test_reads_that_follow_one_another_keep_the_connection() -> None:
    db = Database()
    reads = EpochReads(db.reading)
    db.gate.clear()
    first = asyncio.create_task(reads.get("epoch:accounts"))
    await settle()
    second = asyncio.create_task(reads.get("epoch:accounts"))  # after the first started
    await settle()
    db.gate.set()
    await asyncio.gather(first, second)
    assert db.events == ["connect", "read", "read", "disconnect"]


async def test_an_error_reaches_its_waiters_and_the_next_call_reads_again() -> None:
    db = Database()
    reads = EpochReads(db.reading)
    db.fail = StoreError("PostgreSQL did not answer")
    found: list[Any] = await asyncio.gather(
        reads.get("epoch:accounts"), reads.get("epoch:sessions"), return_exceptions=True
    )
    assert all(isinstance(error, StoreError) for error in found)
    db.fail = None
    assert await reads.get("epoch:accounts") == b"a1"


async def test_a_connection_that_cannot_be_made_fails_its_waiters_once() -> None:
    class Down(Database):
        @contextlib.asynccontextmanager
        async def reading(self) -> AsyncIterator[Fetch]:
            self.events.append("connect")
            raise StoreError("PostgreSQL did not answer")
            yield  # pragma: no cover

    db = Down()
    reads = EpochReads(db.reading)
    with pytest.raises(StoreError):
        await reads.get("epoch:accounts")
    assert db.events == ["connect"], "no retry loop while the database is down"


async def test_a_later_request_in_the_same_task_needs_a_read_of_its_own() -> None:
    """An in-process client runs requests one after another in one task: marks must not leak."""
    db = Database()
    reads = EpochReads(db.reading)
    mark = request_arrived()
    assert await reads.get("epoch:accounts") == b"a1"
    request_done(mark)
    db.rows["epoch:accounts"] = b"a2"
    mark = request_arrived()
    assert await reads.get("epoch:accounts") == b"a2"
    request_done(mark)
    assert await reads.get("epoch:accounts") == b"a2"
    assert db.reads() == 3
