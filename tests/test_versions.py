"""The supported versions say the same everywhere: pyproject.toml, README.md and what CI runs.

CI (.ci/run) runs the whole suite on each Python the classifiers name, and the
Starlette and FastAPI tests with .ci/oldest.txt's pins, which must be the lower
bounds that pyproject.toml states: a bound moved without CI would go untested.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def classified_pythons() -> list[str]:
    pattern = re.compile(r"Programming Language :: Python :: (3\.\d+)")
    return [m[1] for c in PROJECT["classifiers"] if (m := pattern.fullmatch(c))]


def oldest_pins() -> dict[str, str]:
    lines = (ROOT / ".ci" / "oldest.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip(): version.strip() for name, version in pins}


def all_requirements() -> list[str]:
    extras = PROJECT["optional-dependencies"].values()
    return [*PROJECT["dependencies"], *(r for extra in extras for r in extra)]


def test_ci_runs_the_suite_on_each_python_the_classifiers_name() -> None:
    (listed,) = re.findall(r"^PYTHONS=\((.*)\)$", CI, re.MULTILINE)
    assert listed.split() == classified_pythons() != []


def test_requires_python_is_the_oldest_tested() -> None:
    assert PROJECT["requires-python"] == f">={classified_pythons()[0]}"


def test_the_readme_states_the_tested_pythons() -> None:
    assert f"| Python | {', '.join(classified_pythons())} |" in README


def test_the_oldest_pins_are_the_lower_bounds_and_the_readme_says_so() -> None:
    pins = oldest_pins()
    assert set(pins) == {"starlette", "fastapi", "sqlalchemy", "aiosqlite"}
    for name, version in pins.items():
        bounds = [
            re.sub(r"\[.*?\]", "", r.split("#")[0]).strip()  # "sqlalchemy[asyncio]>=..."
            for r in all_requirements()
            if re.match(name + r"\b", r)
        ]
        assert bounds == [f"{name}>={version}"], (name, bounds)
    assert f"| Starlette | {pins['starlette']} and the newest |" in README
    assert f"| FastAPI | {pins['fastapi']} and the newest |" in README
    assert f"| SQLAlchemy | {pins['sqlalchemy']} and the newest |" in README
    assert f"| aiosqlite | {pins['aiosqlite']} and the newest |" in README
