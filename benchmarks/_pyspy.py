"""py-spy for benchmarks/load.py: sample a server during one more wrk run; where the µs go.

The samples are py-spy's raw (collapsed) stacks, taken ``PROFILE_RATE`` times a
second from the thread that holds the GIL (``py-spy record --gil``). Each
sample is put in the category of its innermost frame (whose code was running)
and counted for the frames of interest anywhere on its stack (inclusive).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILE_RATE = 200  # py-spy samples a second
CATEGORIES = (  # (label, start of a frame's file path), the first that matches wins
    ("uvicorn (the HTTP protocol)", "uvicorn/"),
    ("starlette (routing, request, response)", "starlette/"),
    ("doorman: sessions", "doorman/sessions/"),
    ("doorman: stores", "doorman/stores/"),
    ("doorman: auth (actor, users, tokens)", "doorman/auth/"),
    ("doorman: the rest (server views, signing, database)", "doorman/"),
    ("sqlalchemy (query building, compiling, results)", "sqlalchemy/"),
    ("aiosqlite (queue hand-offs to its threads, sqlite3 calls)", "aiosqlite/"),
    ("redis client", "redis/"),
    ("asyncpg", "asyncpg/"),
    ("logging (doorman's access log)", "logging/"),
    ("uvloop's event loop itself (C code under asyncio.run)", "asyncio/runners.py"),
    ("asyncio", "asyncio/"),
    ("threads and queues (stdlib)", "threading.py"),
    ("threads and queues (stdlib)", "queue.py"),
    ("threads and queues (stdlib)", "concurrent/"),
)
GREENLET = "- SQLAlchemy's sync work in its greenlets (execute, connect, close)"
#: Frames whose share "on the stack" (inclusive) is shown: (label, what the frame starts with).
ON_STACK = (
    ("the session store's read (Session.load)", "Session.load (doorman/"),
    ("the actor (AuthMiddleware.resolve), of which:", "AuthMiddleware.resolve (doorman/"),
    ("- the user and sign-in lookup (Users.get_signed_in)", "Users.get_signed_in (doorman/"),
    ("- the API token and its user (Tokens.verify_with_user)", "Tokens.verify_with_user ("),
    ("Starlette: routing, the view, the response", "Starlette.__call__ (starlette/"),
    ("SQLAlchemy's async bridge (greenlet_spawn), of which:", "greenlet_spawn (sqlalchemy/"),
    (GREENLET, ""),  # counted by read_samples: stacks that start inside a greenlet
    (
        "aiosqlite's hand-offs to its thread (Connection._execute)",
        "Connection._execute (aiosqlite/",
    ),
    ("new threads (Thread.start: new aiosqlite connections)", "Thread.start ("),
    ("the access line (Logger.handle)", "Logger.handle (logging/"),
)
_FRAME_FILE = re.compile(r"\((.*):\d+\)$")


def category(frame: str) -> str:
    found = _FRAME_FILE.search(frame)
    path = found[1] if found else frame
    for label, start in CATEGORIES:
        if path.startswith(start) or f"/{start}" in path:
            return label
    return "other (stdlib and the rest)"


@dataclass
class Samples:
    total: int = 0
    own: Counter[str] = field(default_factory=Counter)  # by category of the innermost frame
    leaves: Counter[str] = field(default_factory=Counter)
    on_stack: Counter[str] = field(default_factory=Counter)  # by ON_STACK label


def read_samples(raw: Path) -> Samples:
    """py-spy's raw (collapsed) output: "frame;frame;...;innermost count" a line."""
    found = Samples()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        found.total += n
        found.own[category(frames[-1])] += n
        found.leaves[frames[-1]] += n
        labels = {label for label, head in ON_STACK if head for f in frames if f.startswith(head)}
        if category(frames[0]).startswith("sqlalchemy"):
            # SQLAlchemy's sync code runs in a greenlet whose stack starts there: the
            # doorman frames that awaited it are not on it, but the time is theirs.
            labels |= {GREENLET, "SQLAlchemy's async bridge (greenlet_spawn), of which:"}
        for label in labels:
            found.on_stack[label] += n
    return found


def record(pid: int, seconds: int, load: Callable[[int], Any]) -> tuple[Any, Samples] | str:
    """Sample process ``pid`` while ``load(seconds - 1)`` runs; its result and the samples.

    A string instead says why there is no profile.
    """
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return "py-spy is not installed in this venv (benchmarks/requirements.txt pins it)"
    with tempfile.TemporaryDirectory(prefix="doorman-load-") as tmp:
        raw = Path(tmp) / "profile.txt"
        command = [str(spy), "record", "--pid", str(pid)]
        command += [
            "--duration",
            str(seconds),
            "--rate",
            str(PROFILE_RATE),
            "--gil",
            "--nonblocking",
        ]
        command += ["--format", "raw", "--output", str(raw)]
        sampler = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        time.sleep(0.5)  # py-spy attaches; the load ends before its sampling does
        run = load(seconds - 1)
        try:
            _, error = sampler.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            sampler.kill()
            sampler.wait()
            return "py-spy did not finish"
        if sampler.returncode != 0 or not raw.exists():
            last = (error.strip().splitlines() or ["no message"])[-1]
            return f"py-spy failed ({last})"
        samples = read_samples(raw)
    if not samples.total:
        return "py-spy took no samples"
    return run, samples


PROFILE_INTRO = f"""
### Where the time goes (py-spy)

After the runs, one more wrk run of the signed-in `/-/auth` on each store named by
`--profile`, while py-spy sampled the server {PROFILE_RATE} times a second, each time the
thread that held the GIL (`py-spy record --gil`). "≈ µs per request" is the samples'
time over the requests: Python's own work per request. C code that keeps the GIL
counts under the Python frame that called it (uvloop's loop under `Runner.run`); a
thread that holds the GIL while the kernel has switched to another counts too, which
on one busy core inflates the frame just after a thread wake-up. SQLAlchemy runs its
sync engine code in greenlets, whose stacks start at SQLAlchemy: those samples lack
the doorman frames that awaited them, so the actor's and the session's rows leave
that work out; it is in the greenlet row.
"""


def profile_text(what: str, run: Any, samples: Samples) -> str:
    """The tables for the docs: ``what`` was loaded, ``run`` is the wrk run (requests, rps)."""
    total = samples.total

    def us(n: int) -> str:  # GIL-holding time per request that n samples stand for
        return f"{n / PROFILE_RATE / max(1, run.requests) * 1e6:,.0f}"

    rows = ["| innermost Python frame in | share of samples | ≈ µs per request |", "|---|--:|--:|"]
    rows += [f"| {label} | {n / total:.0%} | {us(n)} |" for label, n in samples.own.most_common()]
    stack = ["| on the stack (inclusive) | share of samples | ≈ µs per request |", "|---|--:|--:|"]
    for label in dict.fromkeys(label for label, _ in ON_STACK):
        n = samples.on_stack[label]
        if n:
            stack.append(f"| {label} | {n / total:.0%} | {us(n)} |")
    top = "".join(f"\n- {n / total:.0%} `{frame}`" for frame, n in samples.leaves.most_common(8))
    return f"""
#### {what}

{run.requests:,} requests ({run.rps:,.0f}/s while sampled, {run.cpu_us:,.0f} µs of server
CPU each), {total:,} samples.

{chr(10).join(rows)}

{chr(10).join(stack)}

The innermost frames with the most samples:
{top}
"""
