"""The Redis store batches session reads made in the same turn of the event loop.

Against the real Redis server; the store's batch reader's ``mget`` is wrapped only to
count calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from doorman.exceptions import StoreError
from doorman.stores.redis import RedisStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    await store.close()


def count_mgets(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of keys in each MGET the store sends from now on."""
    sizes: list[int] = []
    mget = store._reader.mget

    async def counted(names: list[str], *args: Any) -> Any:
        sizes.append(len(names))
        return await mget(names, *args)

    monkeypatch.setattr(store._reader, "mget", counted)
    return sizes


async def test_concurrent_reads_share_one_round_trip(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = time.time() + 60
    keys = [await store.save(None, f'{{"n": {n}}}', later) for n in range(20)]
    sizes = count_mgets(store, monkeypatch)

    payloads = await asyncio.gather(*(store.load(key) for key in [*keys, keys[0], "unknown"]))

    assert payloads == [*(f'{{"n": {n}}}' for n in range(20)), '{"n": 0}', None]
    assert sizes == [21], "twenty keys, one of them asked twice, and an unknown one"


async def test_reads_in_later_turns_make_new_batches(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await store.save(None, '{"a": 1}', time.time() + 60)
    sizes = count_mgets(store, monkeypatch)

    for _ in range(3):
        assert await store.load(key) == '{"a": 1}'
    first = asyncio.ensure_future(store.load(key))
    await asyncio.sleep(0.05)  # the first batch is under way: a new read starts the next
    second = await store.load(key)

    assert (await first, second) == ('{"a": 1}', '{"a": 1}')
    assert sizes == [1, 1, 1, 1, 1]


async def test_a_cancelled_read_leaves_the_others_their_answer(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await store.save(None, '{"a": 1}', time.time() + 60)
    reads = [asyncio.ensure_future(store.load(key)) for _ in range(3)]
    await asyncio.sleep(0)
    reads[1].cancel()

    done = await asyncio.gather(*reads, return_exceptions=True)

    assert done[0] == done[2] == '{"a": 1}'
    assert isinstance(done[1], asyncio.CancelledError)


async def test_every_waiting_read_fails_closed_when_redis_is_down() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", timeout=1)
    try:
        results = await asyncio.gather(
            *(store.load(f"key-{n}") for n in range(5)), return_exceptions=True
        )
    finally:
        await store.close()

    assert all(isinstance(result, StoreError) for result in results), results
    assert len({str(result) for result in results}) == 1


async def test_a_burst_beyond_the_pool_waits_for_connections(
    redis_url: str, redis_prefix: str
) -> None:
    """Two hundred saves at once through ten connections: all done, none refused."""
    store = RedisStore(redis_url, prefix=redis_prefix, max_connections=10)
    try:
        later = time.time() + 60
        keys = await asyncio.gather(*(store.save(None, f'{{"n": {n}}}', later) for n in range(200)))
        loaded = await asyncio.gather(*(store.load(key) for key in keys))
    finally:
        await store.close()

    assert loaded == [f'{{"n": {n}}}' for n in range(200)]


async def test_a_read_cut_short_never_leaves_its_reply_to_the_next(store: RedisStore) -> None:
    """An MGET cancelled at any point drops its connection: the next gets its own values."""
    later = time.time() + 60
    first = await store.save(None, '"first"', later)
    second = await store.save(None, '"second"', later)
    reader = store._reader
    names = [store._name(first)], [store._name(second)]
    for turns in range(8):
        cut = asyncio.ensure_future(reader.mget(names[0]))
        for _ in range(turns):
            await asyncio.sleep(0)
        cut.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cut
        assert await reader.mget(names[1]) == ['"second"'], f"cut after {turns} turns"


async def test_a_dropped_connection_is_made_again(store: RedisStore) -> None:
    key = await store.save(None, '"kept"', time.time() + 60)
    assert await store.load(key) == '"kept"'
    await store._reader._connection.disconnect()  # as a Redis restart leaves it
    assert await store.load(key) == '"kept"'
