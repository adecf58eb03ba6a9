"""What the security event log costs: a sign-in with and without it, and raw writes.

    .venv/bin/python benchmarks/events.py [--db postgresql://...] [--rounds 300]

Sign-ins go through the sign-in server in process (httpx over ASGI, the real
login form, a real SQLite file or PostgreSQL database), with argon2id at
doorman's own parameters and again with a cheap hash, which leaves the rest
of the path (and so the log's share of it) in plain view. "log off" replaces
``EventLog.record_event`` with a function that does nothing. Then writes alone:
one at a time, and a burst of concurrent ones (which go out in batches).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from doorman import PasswordHasher
from doorman.config import assemble, load_settings
from doorman.events import EventKind
from doorman.server.app import create_app

SECRET = "benchmark-secret-" + "b" * 32
PASSWORD = "correct horse battery staple"


async def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


async def sign_ins(db: str, rounds: int, *, cheap_hash: bool, log: bool) -> list[float]:
    settings = load_settings(environ={}, overrides={"db": db, "secret": SECRET})
    doorman, store = assemble(settings, [SECRET])
    if cheap_hash:
        doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    if not log:
        doorman.events.record_event = _nothing  # type: ignore[method-assign]
    await doorman.startup()
    try:
        if await doorman.users.by_username("bench") is None:
            await doorman.create_user("bench", PASSWORD)
        app = create_app(settings, doorman=doorman, store=store)
        transport = httpx.ASGITransport(app)  # type: ignore[arg-type]
        times = []
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as browser:
            for _ in range(rounds):
                browser.cookies.clear()
                token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
                form = {"username": "bench", "password": PASSWORD, "csrftoken": token}
                started = time.perf_counter()
                answer = await browser.post("/-/login", data=form)
                times.append(time.perf_counter() - started)
                assert answer.status_code == 302, answer.text
        return times
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


async def writes(db: str, count: int) -> tuple[float, float]:
    """Seconds for ``count`` writes one after another, and for ``count`` at once."""
    settings = load_settings(environ={}, overrides={"db": db, "secret": SECRET})
    doorman, store = assemble(settings, [SECRET])
    await doorman.startup()
    record: Callable[[], Awaitable[None]] = lambda: doorman.events.record(  # noqa: E731
        EventKind.SIGN_IN_FAILED, address="203.0.113.5", detail={"reason": "bad-credentials"}
    )
    try:
        started = time.perf_counter()
        for _ in range(count):
            await record()
        one_by_one = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(record() for _ in range(count)))
        return one_by_one, time.perf_counter() - started
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(times) * 1000:6.2f} ms, p95 {p95 * 1000:6.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="a postgresql:// URL; default: a new SQLite file")
    parser.add_argument("--rounds", type=int, default=300)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        db = options.db or str(Path(directory) / "bench.db")
        print(f"database: {db.split('@')[-1]}, {options.rounds} sign-ins each")
        for cheap in (False, True):
            for log in (True, False, True, False):  # interleaved: the machine warms up
                times = await sign_ins(db, options.rounds, cheap_hash=cheap, log=log)
                hashing = "cheap hash " if cheap else "argon2id   "
                print(f"sign-in, {hashing} log {'on ' if log else 'off'}: {summary(times)}")
        count = 1000
        one_by_one, together = await writes(db, count)
        print(f"{count} writes one by one: {one_by_one / count * 1000:.2f} ms each")
        print(f"{count} writes at once:    {together * 1000:.0f} ms in all")


if __name__ == "__main__":
    asyncio.run(main())
