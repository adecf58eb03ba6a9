"""What a benchmark ran (Python, versions, commit), and writing its table into the docs."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).parent.parent


def package_versions(packages: Iterable[str]) -> list[str]:
    """``["Python 3.11.7", "doorman 0.1.0 (commit abc123)", ...]``; the first package is ours."""
    found = [f"Python {platform.python_version()}"]
    for name in packages:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if commit and len(found) > 1:
        found[1] += f" (commit {commit})"
    return found


def write_block(docs: Path, begin: str, end: str, text: str, intro: str) -> None:
    """Replace the ``begin``...``end`` block of ``docs`` with ``text`` (which holds both
    markers), or append ``intro`` and ``text`` when the block is not there yet."""
    old = docs.read_text()
    if begin in old and end in old:
        before, rest = old.split(begin, 1)
        new = before + text + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + intro + text + "\n"
    docs.write_text(new)
