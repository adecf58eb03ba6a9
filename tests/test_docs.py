"""The docs are checked: examples run, and every option and command is documented."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import click
import httpx
import pytest

from doorman import AuthMiddleware, Doorman, PasswordHasher, SessionMiddleware
from doorman.cli import main

ROOT = Path(__file__).parent.parent
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


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


@pytest.mark.anyio
async def test_the_auth_guide_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # it writes accounts.db
    source = python_blocks((ROOT / "docs" / "auth.md").read_text())[0]
    namespace: dict[str, Any] = {}
    exec(compile(source, "docs/auth.md", "exec"), namespace)  # our own docs
    doorman = namespace["doorman"]
    doorman.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    doorman.users.hasher = doorman.hasher
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
