"""Reads that go out in batches, one batch in flight at a time per event loop.

Callers ask for keys; the keys asked while no batch is under way go out
together when it can start, and those asked while one is under way wait for
the next. So the busier a worker, the bigger its batches and the less each
read costs (the Redis store's session reads), and every answer comes from a
read that started after its caller asked (the PostgreSQL change epoch: a
change committed before the request is always seen). An idle worker sends a
batch of one key at once. An error reaches every caller of its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Batches"]

K = TypeVar("K")
V = TypeVar("V")


class Batches(Generic[K, V]):
    """``await batches.get(key)``; ``fetch(keys)`` answers a batch, in the keys' order."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[Sequence[V]]]) -> None:
        self._fetch = fetch
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._waiting, self._loop, self._reader = {}, loop, None
        future: asyncio.Future[V] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None:
            # It starts after the requests already scheduled in this turn: they join in.
            self._reader = loop.create_task(self._read_batches())
        return await future

    async def _read_batches(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                await self._answer(batch)
        except asyncio.CancelledError:
            _cancel(self._waiting)
            self._waiting = {}
            raise
        finally:
            self._reader = None

    async def _answer(self, batch: dict[K, list[asyncio.Future[V]]]) -> None:
        keys = list(batch)
        try:
            values = await self._fetch(keys)
        except asyncio.CancelledError:
            _cancel(batch)
            raise
        except Exception as error:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        for key, value in zip(keys, values, strict=True):
            for future in batch[key]:
                if not future.done():
                    future.set_result(value)


def _cancel(waiting: dict[Any, list[asyncio.Future[Any]]]) -> None:
    for futures in waiting.values():
        for future in futures:
            future.cancel()
