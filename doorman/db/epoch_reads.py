"""PostgreSQL's change epochs, read at most once per request, every epoch in one query.

A worker on PostgreSQL cannot keep anything between requests without reading
the epoch rows (``doorman.epochs``): a change committed before a request must
be seen by that request, whichever worker or host committed it. A read
answers a request when it *started after the request arrived*; then every
change committed before the request is in what it returns.

``request_arrived()`` marks a request's start (the sign-in server calls it at
its entrance, and ``request_done()`` at its end). Until then, in that
request's context, any read that started later answers for every epoch: the
session store's and the accounts' epochs come from one query, and requests
that arrived while no read was under way share the next one. Outside a marked
request (a library call, the command line), a read must start after the call
itself, as ``Batches`` does. One read is under way at a time per event loop,
and reads that follow one another go through one connection, without a
transaction (each statement sees every commit before it); an error reaches
everyone who waited for that read.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

__all__ = ["EpochReads", "reads_started", "request_arrived", "request_done"]

#: Reads started in this process so far: a read's number is the count once it starts.
_started = 0
#: ``_started`` when the current request arrived; None outside a marked request.
_arrived: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "doorman_request_arrived", default=None
)


def request_arrived() -> contextvars.Token[int | None]:
    """Mark that a request starts here: reads from now on may answer it.

    Pass what it returns to ``request_done`` when the request is over: a server
    that runs requests one after another in one task (as an in-process client
    does) must not let a later request take an earlier one's mark.
    """
    return _arrived.set(_started)


def request_done(mark: contextvars.Token[int | None]) -> None:
    _arrived.reset(mark)


def reads_started() -> int:
    """How many reads of epoch rows this process has started (tests count them)."""
    return _started


Values = dict[str, bytes]
Fetch = Callable[[], Awaitable[Values]]
_Read = tuple[list[asyncio.Future[Values]], Values]  # who waited for a read, and what it read


class EpochReads:
    """``await reads.get(name)``: the epoch ``name``, from a read that started late enough.

    ``reading()`` opens what reads go through (a connection) and yields a
    function that reads every epoch row at once (name to value; a missing row
    is an empty value). Reads that follow one another keep it open; it closes
    when none waits.
    """

    def __init__(self, reading: Callable[[], AbstractAsyncContextManager[Fetch]]) -> None:
        self._reading = reading
        # Weak: a loop may hold, through its tasks, the engine these reads are kept for.
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._done: tuple[int, Values] | None = None  # the last read that succeeded
        self._running: tuple[int, list[asyncio.Future[Values]]] | None = None
        self._next: list[asyncio.Future[Values]] = []  # waiting for the read after that
        self._reader: asyncio.Task[None] | None = None

    async def get(self, name: str) -> bytes:
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop() is not loop:
            self._loop, self._done, self._running, self._next = weakref.ref(loop), None, None, []
            self._reader = None
        arrived = _arrived.get()
        since = _started if arrived is None else arrived  # reads numbered above this will do
        done = self._done
        if done is not None and done[0] > since:
            return done[1].get(name, b"")
        future: asyncio.Future[Values] = loop.create_future()
        running = self._running
        if running is not None and running[0] > since:
            running[1].append(future)
        else:
            self._next.append(future)
            if self._reader is None:
                # It starts after the requests already scheduled in this turn: they join in.
                self._reader = loop.create_task(self._read())
        return (await future).get(name, b"")

    async def _read(self) -> None:
        unanswered: _Read | None = None  # read, with its waiters not answered yet
        try:
            while self._next:
                try:
                    async with self._reading() as fetch:
                        while self._next:
                            if unanswered is not None:
                                _answer(unanswered)
                            unanswered = await self._read_once(fetch)
                except Exception as error:  # reading failed, or connecting: its waiters hear
                    running, self._running = self._running, None
                    if running is not None:
                        failed = running[1]
                    else:  # no read started: those who wait for the first fail, not retry
                        failed, self._next = self._next, []
                    for future in failed:
                        if not future.done():
                            future.set_exception(error)
                # The connection is back before the last read's answer is out: nobody it
                # answers can finish (and close the engine) with the connection still out.
                if unanswered is not None:
                    _answer(unanswered)
                    unanswered = None
        except asyncio.CancelledError:
            if unanswered is not None:
                _answer(unanswered)
            for future in [*(self._running[1] if self._running else ()), *self._next]:
                future.cancel()
            self._running, self._next = None, []
            raise
        finally:
            self._reader = None

    async def _read_once(self, fetch: Fetch) -> _Read:
        global _started
        waiting, self._next = self._next, []
        _started += 1
        number = _started
        self._running = (number, waiting)
        values = await fetch()
        self._running, self._done = None, (number, values)
        return waiting, values


def _answer(read: _Read) -> None:
    waiting, values = read
    for future in waiting:
        if not future.done():
            future.set_result(values)
