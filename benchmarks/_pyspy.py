"""py-spy for benchmarks/load.py: sample a server during one more wrk run; where the µs go.

The samples are py-spy's raw (collapsed) stacks, taken ``PROFILE_RATE`` times a
second from the thread that holds the GIL, without pausing the server
(``py-spy record --gil --nonblocking``). Each sample is put in the category of
its innermost frame: the code that was running.
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
#: (label, starts of a frame's file path): a sample goes to the first label whose path
#: matches its innermost frame, the code that was running.
CATEGORIES = (
    ("uvicorn: HTTP parsing, the response's socket writes", ("uvicorn/",)),
    ("Starlette: routing, request, response", ("starlette/",)),
    ("doorman: the access log (and `logging`)", ("doorman/server/access_log.py", "logging/")),
    ("doorman: security headers", ("doorman/server/headers.py",)),
    (
        "doorman: the forward-auth answer (view, identity headers)",
        ("doorman/server/views/api.py", "doorman/_types.py", "doorman/_identity.py", "urllib/"),
    ),
    (
        "doorman: the fast paths and kept answers",
        ("doorman/server/fast_auth.py", "doorman/server/kept_answers.py"),
    ),
    ("doorman: other server middleware", ("doorman/server/", "doorman/auth/websockets.py")),
    (
        "doorman: the session (middleware, cookie, signature, payload)",
        ("doorman/sessions/", "doorman/stores/", "doorman/signing.py", "json/", "hmac.py"),
    ),
    (
        "doorman: the permission check",
        ("doorman/accounts/permissions.py", "doorman/auth/permissions.py", "doorman/core.py"),
    ),
    (
        "doorman: the actor (auth middleware, users, sign-ins, tokens, epochs)",
        ("doorman/auth/", "doorman/accounts/", "doorman/db/"),
    ),
    ("doorman: the rest", ("doorman/",)),
    ("sqlalchemy (query building, compiling, results)", ("sqlalchemy/",)),
    ("aiosqlite (queue hand-offs to its threads, sqlite3 calls)", ("aiosqlite/",)),
    ("redis client", ("redis/",)),
    ("asyncpg", ("asyncpg/",)),
    ("uvloop's event loop itself (C code under asyncio.run)", ("asyncio/runners.py",)),
    ("asyncio", ("asyncio/",)),
    ("threads and queues (stdlib)", ("threading.py", "queue.py", "concurrent/")),
)
_FRAME_FILE = re.compile(r"\((.*):\d+\)$")
_LINE = re.compile(r":\d+\)$")


def category(frame: str) -> str:
    found = _FRAME_FILE.search(frame)
    path = found[1] if found else frame
    for label, starts in CATEGORIES:
        if any(path.startswith(start) or f"/{start}" in path for start in starts):
            return label
    return "other (stdlib and the rest)"


@dataclass
class Samples:
    total: int = 0
    own: Counter[str] = field(default_factory=Counter)  # by category of the innermost frame
    functions: Counter[str] = field(default_factory=Counter)  # innermost function, any line


def read_samples(raw: Path) -> Samples:
    """py-spy's raw (collapsed) output: "frame;frame;...;innermost count" a line.

    Only the innermost frame counts: without pausing the server, and with
    coroutines resumed by the event loop, py-spy often sees a stack cut short
    above it, so that the outer frames (who called) are not reliable.
    """
    found = Samples()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, innermost = int(count), stack.split(";")[-1]
        found.total += n
        found.own[category(innermost)] += n
        found.functions[_LINE.sub(")", innermost)] += n
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
`--profile`, while py-spy sampled the server {PROFILE_RATE} times a second without
pausing it, each time the thread that held the GIL (`py-spy record --gil
--nonblocking`). Each sample counts for the code that was running (the innermost
frame); "≈ µs per request" is the samples' time over the requests: Python's own work
per request, the C code it called included (a socket write counts for the uvicorn
line that wrote). The samples leave out the time the server waited for a CPU or for
a store, so they add up to less than the server's CPU per request.
"""


def profile_text(what: str, run: Any, samples: Samples) -> str:
    """The tables for the docs: ``what`` was loaded, ``run`` is the wrk run (requests, rps)."""
    total = samples.total

    def us(n: int) -> str:  # GIL-holding time per request that n samples stand for
        return f"{n / PROFILE_RATE / max(1, run.requests) * 1e6:,.1f}"

    rows = ["| innermost frame in | share of samples | ≈ µs per request |", "|---|--:|--:|"]
    rows += [f"| {label} | {n / total:.0%} | {us(n)} |" for label, n in samples.own.most_common()]
    rows.append(f"| all | 100% | {us(total)} |")
    top = "".join(
        f"\n- {us(n)} µs ({n / total:.0%}) `{name}`"
        for name, n in samples.functions.most_common(12)
    )
    return f"""
#### {what}

{run.requests:,} requests ({run.rps:,.0f}/s while sampled, {run.cpu_us:,.0f} µs of server
CPU each), {total:,} samples.

{chr(10).join(rows)}

The functions that ran the most (innermost frames):
{top}
"""
