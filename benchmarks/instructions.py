"""Instructions per forward-auth check, counted by callgrind: a figure no load can move.

On a shared machine, requests/s and even CPU time per request move by 10-20%
from one run to the next; the instructions a server runs for one request do
not. This runs each server under ``valgrind --tool=callgrind`` with counting
off, makes it answer a warm-up, then counts only while one keep-alive client
sends ``--requests`` requests one after another, and prints the instructions
per request (user space only: the kernel's share of each socket write is not
in them) and the bare app's share of them.

One client at a time: each request is its own turn of the event loop, so the
Redis store reads its session alone, where under load one MGET serves every
request of a turn; compare stores with ``benchmarks/load.py``, and code with
code here. ``--pythonpath`` runs another checkout's doorman (an older commit's
worktree) in the same environment, for a before and after:

    benchmarks/.venv/bin/python benchmarks/instructions.py
    benchmarks/.venv/bin/python benchmarks/instructions.py --pythonpath ../old-checkout

Each server takes a minute or two under valgrind (its start-up alone, about 40
instructions in a thousand of the run, is not counted).
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import load  # benchmarks/load.py: its servers, users, sign-in and environment

CASES = {
    "bare": ("/", {}),
    "signed in": ("/-/auth", {"Cookie": ""}),
    "anonymous": ("/-/auth", {}),
}


def serve_command(server: load.Server, out: Path) -> list[str]:
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    return [
        *valgrind,
        f"--callgrind-out-file={out}",
        *load.serve_command(server, load.Placement(None, None)),
    ]


def wait_until_up(server: load.Server, process: subprocess.Popen[bytes], log: Path) -> None:
    ready = "/" if server.store == load.BARE else "/-/health"
    deadline = time.monotonic() + 600  # valgrind starts Python some thirty times slower
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{server.store}: the server exited:\n{log.read_text()}")
        try:
            if load.request(server, "GET", ready)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"{server.store}: no answer within 600 s")


def ask(server: load.Server, path: str, headers: dict[str, str], count: int, status: int) -> None:
    connection = http.client.HTTPConnection(load.HOST, server.port, timeout=60)
    for _ in range(count):
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != status:
            raise SystemExit(f"{server.store} {path}: {answer.status}, not {status}")
    connection.close()


def callgrind(process: subprocess.Popen[bytes], *options: str) -> None:
    subprocess.run(
        ["callgrind_control", *options, str(process.pid)], check=True, capture_output=True
    )


def counted(out: Path) -> int:
    """The instructions counted, from every file callgrind wrote (it writes one per dump)."""
    total = 0
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


def measure(store: str, case: str, requests: int, pythonpath: str | None, tmp: Path) -> float:
    where = tmp / f"{store}-{case.replace(' ', '-')}"
    where.mkdir()
    versions: dict[str, str] = {}
    with load.prepared(load.BARE if store == load.BARE else store, where, versions) as server:
        if pythonpath:
            server.env["PYTHONPATH"] = pythonpath
        if store != load.BARE:
            load.doorman(
                ["users", "create", load.USERNAME, "--password-stdin", "--db", server.db],
                where,
                load.PASSWORD,
            )
        server.port = load.free_port()
        out, log = where / "callgrind.out", where / "server.log"
        with log.open("wb") as errors:
            process = subprocess.Popen(
                serve_command(server, out),
                cwd=where,
                env={**load.doorman_env(), **server.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        try:
            wait_until_up(server, process, log)
            path, headers = CASES[case]
            if case == "signed in":
                load.sign_in(server)
                headers = {"Cookie": server.cookie}
            status = 401 if case == "anonymous" else 200
            ask(server, path, headers, 300, status)  # warm: caches, kept answers
            callgrind(process, "--instr=on")
            ask(server, path, headers, requests, status)
            callgrind(process, "--instr=off")
            callgrind(process, "--dump")
        finally:
            process.terminate()
            process.wait(timeout=120)
        return counted(out) / requests


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="doorman-instructions-") as tmp:
        floor = measure(load.BARE, "bare", args.requests, None, Path(tmp))
        print(f"bare ASGI app: {floor / 1000:,.1f}k instructions a request", flush=True)
        for store in args.stores:
            for case in ("signed in", "anonymous"):
                each = measure(store, case, args.requests, args.pythonpath, Path(tmp))
                print(
                    f"{store}, /-/auth {case}: {each / 1000:,.1f}k instructions a request, "
                    f"the bare app's {floor / each:.2f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stores",
        type=load.stores,
        default=["cookie"],
        help="comma-separated, of: " + ", ".join(load.ALL_STORES) + " (default: cookie)",
    )
    parser.add_argument("--requests", type=int, default=1000, help="counted requests (1000)")
    parser.add_argument("--pythonpath", help="run this checkout's doorman (PYTHONPATH)")
    sys.exit(main(parser.parse_args()))
