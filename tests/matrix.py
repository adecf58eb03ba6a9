"""Environments of their own for the version matrix, built from the package index.

A test that must see doorman beside another version of a package (Datasette 1.0
next to the suite's 0.65), or with nothing but its core dependencies, gets a
virtualenv of its own under ``.venv-matrix/`` (gitignored), named for what it
holds and the Python it runs on. doorman is installed there editable from this
checkout, so the environment is reused from run to run until pyproject.toml or
what it holds changes. Building one needs the package index: without it such a
test skips, saying why, unless DOORMAN_REQUIRE_SERVICES=1 (as in CI) makes that a
failure. Every pip command is bounded in time.

What each run exercised is listed at the end of pytest's report
(``pytest_terminal_summary`` in conftest.py), so CI shows which versions it tested.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .conftest import _missing

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / ".venv-matrix"
PIP_S = 600  # one pip command, resolving and downloading; a slow index fails, never hangs
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

#: What this run exercised, beyond the suite's own environment: printed at the end.
EXERCISED: list[str] = []


@dataclass(frozen=True)
class Environment:
    path: Path
    holds: tuple[str, ...]

    def script(self, name: str) -> str:
        return str(self.path / "bin" / name)

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``args[0]`` (a script of this environment) with the rest, its output captured."""
        return subprocess.run(
            [self.script(args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=clean_env(),
            cwd=cwd,
        )


def clean_env() -> dict[str, str]:
    """This process's environment without DOORMAN_* or a virtualenv of its own."""
    drop = ("DOORMAN_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _pip(*args: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    """This environment's pip, run for ``python``'s environment if given (``--python``)."""
    target = ["--python", python] if python else []
    command = [sys.executable, "-m", "pip", *target, *args]
    command += ["--disable-pip-version-check", "--no-input"]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=PIP_S, check=False, env=clean_env()
    )


def newest(name: str, versions: str) -> str:
    """The newest release of ``name`` within ``versions`` (``>=1.0a0,<1.1``) on the index."""
    try:
        found = _pip(
            "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
            "--report", "-", f"{name}{versions}",
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        _missing("the package index", error)
    if found.returncode != 0:
        last = (found.stderr.strip().splitlines() or ["no output"])[-1]
        _missing("the package index", RuntimeError(f"pip could not resolve {name}: {last}"))
    [item] = json.loads(found.stdout)["install"]
    version: str = item["metadata"]["version"]
    return version


def environment(name: str, *requirements: str) -> Environment:
    """A virtualenv ``.venv-matrix/NAME-pyX.Y`` holding doorman and ``requirements``.

    A requirement ``doorman`` or ``doorman[extra,...]`` is this checkout, editable.
    """
    path = MATRIX / f"{name}-py{PYTHON}"
    holds = tuple(requirements)
    pip_args = [
        arg
        for r in requirements
        for arg in (
            ["-e", f"{ROOT}{r.removeprefix('doorman')}"] if r.startswith("doorman") else [r]
        )
    ]
    stamp = hashlib.sha256(
        "\n".join([sys.version, *holds, (ROOT / "pyproject.toml").read_text()]).encode()
    ).hexdigest()
    MATRIX.mkdir(exist_ok=True)
    # Tests in other processes (pytest-xdist) may ask for the same one: one builds it.
    with (MATRIX / f"{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _made(path, holds, stamp, pip_args)


def _made(path: Path, holds: tuple[str, ...], stamp: str, pip_args: list[str]) -> Environment:
    made = path / "doorman-matrix.stamp"
    if made.is_file() and made.read_text() == stamp:
        return Environment(path, holds)
    shutil.rmtree(path, ignore_errors=True)
    # No pip of its own: this environment's pip installs into it. ensurepip, which would
    # copy one in, failed now and then while other environments were being built (CI).
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120
    )
    try:
        installed = _pip("install", "--quiet", *pip_args, python=str(path / "bin" / "python"))
    except subprocess.TimeoutExpired as error:
        _missing("the package index", error)
    if installed.returncode != 0:
        # Most often the index (a package it cannot give); in CI a failure all the same.
        last = (installed.stderr.strip().splitlines() or ["no output"])[-1]
        _missing("the package index", RuntimeError(f"pip install {' '.join(pip_args)}: {last}"))
    made.write_text(stamp)
    return Environment(path, holds)


def exercised(what: str) -> None:
    """Note ``what`` for the end of the report, once."""
    line = f"{what} (Python {sys.version.split()[0]})"
    if line not in EXERCISED:
        EXERCISED.append(line)
