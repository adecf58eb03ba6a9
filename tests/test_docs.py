"""The docs are checked: examples run, and every option and command is documented."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import pytest

from doorman import AuthMiddleware, Doorman, PasswordHasher, SessionMiddleware
from doorman.cli import main

from .conftest import POSTGRES_URL, REQUIRE_SERVICES

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = "\n".join(p.read_text() for p in PAGES)
#: What a reader who followed the page has set before pasting its blocks.
READER_ENV = {
    "DOORMAN_SECRET": "docs-reader-secret-" + "r" * 32,
    "ROBOT_KEY": "robot-key",
    "SECRET_KEY": "a-starlette-app-secret-key-of-enough-length",
    "DOORMAN_TEST_POSTGRES_URL": POSTGRES_URL,  # docs/testing.md runs its tests on PostgreSQL
}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.anyio
async def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # it writes sessions.db
    source = next(b for b in python_blocks((ROOT / "README.md").read_text()) if "Starlette(" in b)
    namespace: dict[str, object] = {}
    exec(compile(source, "README.md", "exec"), namespace)  # our own README
    app = namespace["app"]
    transport = httpx.ASGITransport(app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/")).text == "visit number 1"
        assert (await client.get("/")).text == "visit number 2"
    store = app.user_middleware[0].kwargs["store"]  # type: ignore[attr-defined]
    await store.close()


def test_every_middleware_option_is_documented() -> None:
    table = (ROOT / "docs" / "sessions.md").read_text()
    options = [p for p in inspect.signature(SessionMiddleware).parameters if p != "app"]
    missing = [o for o in options if o != "secret_key" and f"| `{o}` |" not in table]
    assert not missing, f"options without a row in docs/sessions.md: {missing}"
    assert "secret_key" in table


def command_paths(group: click.Group, prefix: str = "doorman") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, path))
        else:
            paths.append(path)
    return paths


def test_every_cli_command_is_documented() -> None:
    missing = [path for path in command_paths(main) if path not in DOCS]
    assert not missing, f"commands not in README.md or docs/: {missing}"


def test_every_settings_flag_is_in_the_configuration_guide() -> None:
    """docs/configuration.md lists the flags that set a setting, for every command."""
    from doorman.config import SETTINGS

    flags = {setting.name: setting.flag for setting in SETTINGS}
    used: set[str] = set()
    stack: list[click.Command] = [main]
    while stack:
        command = stack.pop()
        if isinstance(command, click.Group):
            stack.extend(command.commands.values())
        used.update(flags[p.name] for p in command.params if p.name in flags)
    guide = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(flag for flag in used if f"`{flag}`" not in guide)
    assert not missing, f"flags missing from docs/configuration.md: {missing}"


@pytest.mark.anyio
async def test_the_auth_guide_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # it writes accounts.db
    source = python_blocks((ROOT / "docs" / "auth.md").read_text())[0]
    namespace: dict[str, Any] = {}
    exec(compile(source, "docs/auth.md", "exec"), namespace)  # our own docs
    doorman = namespace["doorman"]
    doorman.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    doorman.users.hasher = doorman.hasher
    await doorman.startup()  # what AuthMiddleware does at the app's start-up (lifespan)
    await doorman.create_user("alice", "a long passphrase")
    transport = httpx.ASGITransport(namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/whoami")).json() == {"actor": None}
        assert (await client.get("/reports")).status_code == 401
        wrong = await client.post("/login", data={"username": "alice", "password": "nope"})
        assert wrong.status_code == 401
        signed = await client.post(
            "/login", data={"username": "alice", "password": "a long passphrase"}
        )
        assert signed.json()["actor"]["id"] == "alice"
        assert (await client.get("/whoami")).json()["actor"]["username"] == "alice"
        assert (await client.get("/reports")).status_code == 403, "not an admin, no rule"
        await client.post("/logout")
        assert (await client.get("/whoami")).json() == {"actor": None}
    await doorman.close()
    await namespace["app"].policy.store.close()


@pytest.mark.parametrize("target", [Doorman, AuthMiddleware])
def test_every_accounts_option_is_documented(target: Any) -> None:
    table = (ROOT / "docs" / "auth.md").read_text()
    options = [p for p in inspect.signature(target).parameters if p not in ("app", "self")]
    missing = [o for o in options if f"| `{o}` |" not in table]
    assert not missing, f"{target.__name__} options without a row in docs/auth.md: {missing}"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "page", [p for p in PAGES if "```python" in p.read_text()], ids=lambda p: p.name
)
def test_every_python_block_runs_as_pasted(page: Path, tmp_path: Path) -> None:
    """Each block runs on its own (imports, no undefined names, no top-level await);
    plugin blocks register as plugins; test-file blocks pass under pytest."""
    env = {**os.environ, **READER_ENV}
    runner = ROOT / "tests" / "docs_snippets.py"
    ran = _run([sys.executable, str(runner), str(page)], tmp_path, env)
    assert ran.returncode == 0, f"blocks that fail as pasted:\n{ran.stdout}{ran.stderr}"
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed (make test installs it with the dev extra)")
    lint = [str(ruff), "check", "--isolated", "--no-cache", "--select", "F821,F704,F706", "."]
    linted = _run(lint, tmp_path, env)
    assert linted.returncode == 0, f"undefined names in {page.name}:\n{linted.stdout}"
    if any(tmp_path.glob("test_*.py")):
        pytest_run = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
        tested = _run(pytest_run, tmp_path, env)
        assert tested.returncode == 0, tested.stdout[-3000:]
        unserved = "DOORMAN_TEST_POSTGRES_URL is not set" in tested.stdout
        assert not (REQUIRE_SERVICES and unserved), tested.stdout[-3000:]


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_one_piece_of_advice_on_making_a_secret() -> None:
    """Messages, docs and examples all suggest the same secret recipe."""
    from doorman.signing import MAKE_A_SECRET

    texts = {str(p.relative_to(ROOT)): p.read_text() for p in PAGES}
    texts.update(
        {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "examples").rglob("*.py")}
    )
    recipe = re.search(r"token_urlsafe\(\d+\)", MAKE_A_SECRET)
    assert recipe is not None
    others = {
        f"{name}: {found}"
        for name, text in texts.items()
        for found in re.findall(r"token_urlsafe\(\d+\)", text)
        if found != recipe.group()
    }
    assert not others, f"other secret recipes than {MAKE_A_SECRET!r}: {sorted(others)}"


#: What an example's import needs in its page's `pip install` line (any one of them).
INSTALLED_BY = {
    "starlette": ("doorman[server]", "starlette", "fastapi"),
    "fastapi": ("fastapi",),
    "httpx": ("doorman[gate]", "httpx"),
    "sentry_sdk": ("doorman[sentry]",),
    "datasette": ("doorman[datasette]", "datasette"),
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_install_line_installs_what_the_examples_import(page: Path) -> None:
    text = page.read_text()
    installs = " ".join(re.findall(r"pip install ([^\n#]*)", text))
    if not installs:
        return  # no install line on this page: the README's applies
    imported = set()
    for block in python_blocks(text):
        imported.update(re.findall(r"^(?:from|import) (\w+)", block, flags=re.M))
    missing = [
        package
        for package, choices in INSTALLED_BY.items()
        if package in imported and not any(choice in installs for choice in choices)
    ]
    assert not missing, f"{page.name} imports {missing} but its pip install line lacks them"
