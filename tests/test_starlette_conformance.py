"""Starlette's own SessionMiddleware tests, run against doorman's: the drop-in's acceptance check.

The test file comes from the sdist of the installed Starlette, fetched with pip
at test time (cached under .pytest_cache, never committed) and run unmodified
but for its import line: SessionMiddleware comes from doorman, while Session,
which one test builds by hand, stays Starlette's. It runs in its own pytest
process, with a conftest of ours for the one fixture it needs. Without network
the test skips, unless DOORMAN_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import pytest

from .conftest import _missing

pytestmark = pytest.mark.e2e

THEIR_TEST = "tests/middleware/test_session.py"
AT_LEAST = 15  # how many Starlette 1.10 has; fewer would mean a file that lost its tests
IMPORT = re.compile(r"^from starlette\.middleware\.sessions import (?P<names>.+)$", re.MULTILINE)

CONFTEST = '''\
"""The fixture Starlette's session tests take, without Starlette's conftest (trio, blockbuster)."""

import functools

import pytest
from starlette.testclient import TestClient


@pytest.fixture
def test_client_factory():
    return functools.partial(TestClient, backend="asyncio")
'''

# Starlette's own tests/types.py imports the `httpx2` fork; the file only needs the name.
TYPES = """\
from collections.abc import Callable

from starlette.testclient import TestClient

TestClientFactory = Callable[..., TestClient]
"""

WARNINGS = [
    "error",
    # Starlette's tests sign with "example" on purpose; doorman accepts it, warning once.
    "ignore::doorman.exceptions.WeakSecretWarning",
    # Starlette 1.x asks for `httpx2` for its TestClient; its own configuration ignores this too.
    "ignore:Using `httpx` with `starlette.testclient` is deprecated"
    ":starlette.exceptions.StarletteDeprecationWarning",
]


def download_sdist(release: str, cache: Path) -> Path:
    """Starlette's sdist for ``release``: from the cache, else from PyPI through pip."""
    found = sorted(cache.glob("starlette-*.tar.gz"))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += ["--disable-pip-version-check", "--quiet", "--retries", "1", "--timeout", "15"]
    command += ["--dest", str(cache), f"starlette=={release}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired as error:
        _missing(f"PyPI (pip download starlette=={release})", error)
    found = sorted(cache.glob("starlette-*.tar.gz"))
    if done.returncode != 0 or not found:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        _missing(f"PyPI (pip download starlette=={release})", RuntimeError(lines[-1]))
    return found[0]


def their_test(sdist: Path) -> str:
    """Starlette's session test file, read from the sdist (nothing else is extracted)."""
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.split("/", 1)[-1] == THEIR_TEST:
                extracted = archive.extractfile(member)
                assert extracted is not None
                return extracted.read().decode("utf-8")
    raise AssertionError(f"{sdist.name} has no {THEIR_TEST}")


def with_doormans_middleware(source: str) -> str:
    """``source`` with only its SessionMiddleware import changed to doorman's."""
    (line,) = IMPORT.finditer(source)
    names = [name.strip() for name in line["names"].split(",")]
    assert "SessionMiddleware" in names, line[0]
    kept = [name for name in names if name != "SessionMiddleware"]
    new = "from doorman import SessionMiddleware"
    if kept:
        new = f"from starlette.middleware.sessions import {', '.join(kept)}\n{new}"
    changed = source.replace(line[0], new, 1)
    assert "sessions.SessionMiddleware" not in changed  # no other way in to Starlette's
    return changed


def lay_out(directory: Path, test_source: str) -> None:
    files = {
        "pytest.ini": "[pytest]\n",  # so that no one else's configuration applies
        "conftest.py": CONFTEST,
        "tests/__init__.py": "",
        "tests/types.py": TYPES,
        "tests/middleware/__init__.py": "",
        THEIR_TEST: test_source,
    }
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_starlettes_own_session_tests_pass(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    release = version("starlette")
    cache = getattr(pytestconfig, "cache", None)  # None under -p no:cacheprovider
    directory = cache.mkdir(f"starlette-sdist-{release}") if cache is not None else tmp_path
    source = with_doormans_middleware(their_test(download_sdist(release, directory)))
    lay_out(tmp_path / "run", source)
    report = tmp_path / "report.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
    ]
    for rule in WARNINGS:
        command += ["-W", rule]
    environment = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    environment.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [*command, THEIR_TEST],
        cwd=tmp_path / "run",
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout[-4000:] + done.stderr[-2000:]
    suite = ET.parse(report).getroot().find("testsuite") if report.exists() else None
    assert suite is not None, output
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= AT_LEAST, (counts, output)
    assert counts == {"tests": counts["tests"], "failures": 0, "errors": 0, "skipped": 0}, output
    assert done.returncode == 0, output
