"""The Datasette plugin on the newest Datasette 0.65 and the newest 1.0, as users install it.

The suite's own environment holds one Datasette, which tests/test_datasette.py
runs in process. Here each supported line gets a virtualenv of its own
(tests/matrix.py) holding ``doorman[datasette]`` and that Datasette, and a real
``datasette serve`` runs next to a real ``doorman serve`` in both modes of
docs/datasette.md. Datasette 1.0 depends on httpx2, not httpx; so it also runs
beside doorman's core install alone, where the plugin, loaded by every
``datasette`` command, must not break Datasette, and its gate mode must say which
extra to install.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from .matrix import Environment, environment, exercised, newest
from .test_browser import Server as ServeProcess
from .test_datasette import (
    check_served_access,
    datasette_serving,
    doc_blocks,
    make_data,
    signin_server,
    with_access,
)

pytestmark = pytest.mark.e2e

#: The supported lines of Datasette; the newest release of each is tested.
LINES = {"0.65": ">=0.65,<0.66", "1.0": ">=1.0a0,<1.1"}


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with signin_server(tmp_path_factory.mktemp("serve")) as server:
        yield server


def config_flag(version: str) -> str:
    """Where this Datasette reads plugin settings and ``allow`` blocks from."""
    return "--metadata" if version.startswith("0.") else "--config"


@pytest.fixture(scope="module", params=list(LINES))
def line(request: pytest.FixtureRequest) -> tuple[str, Environment]:
    """The newest Datasette of a line, with ``doorman[datasette]``: its version and environment."""
    version = newest("datasette", LINES[request.param])
    env = environment(f"datasette-{version}", "doorman[datasette]", f"datasette=={version}")
    return version, env


@pytest.fixture(scope="module")
def core_beside_1_0() -> tuple[str, Environment]:
    """The newest Datasette 1.0 beside doorman's core install: no extra, so no httpx."""
    version = newest("datasette", LINES["1.0"])
    env = environment(f"core-datasette-{version}", "doorman", f"datasette=={version}")
    no_httpx = env.run("python", "-c", "import httpx")
    assert no_httpx.returncode == 1, "the premise: httpx is not in this environment"
    return version, env


def served_version(url: str) -> str:
    answer = httpx.get(url + "/-/versions.json", timeout=10).json()
    return str(answer["datasette"]["version"])


def test_both_modes_on_the_newest_of_each_line(
    line: tuple[str, Environment], serve: ServeProcess, tmp_path: Path
) -> None:
    version, env = line
    same_database = doc_blocks("yaml")[0]  # the docs' example, as is
    gate = with_access({"api_url": f"{serve.url}/-/whoami"})
    for mode, config in (("same database", same_database), ("gate", yaml.safe_dump(gate))):
        (tmp_path / mode).mkdir()
        data = make_data(tmp_path / mode)
        with datasette_serving(
            [env.script("datasette")],
            config,
            config_flag=config_flag(version),
            data=data,
            cwd=serve.directory,  # the example's `db: doorman.db` is the server's file
        ) as url:
            assert served_version(url) == version
            check_served_access(url, serve)
    exercised(f"Datasette {version}: same-database and gate modes")


def test_datasette_1_0_starts_with_the_plugin_and_no_httpx(
    core_beside_1_0: tuple[str, Environment],
) -> None:
    """`pip install doorman datasette`: every `datasette` command works, the plugin listed."""
    version, env = core_beside_1_0
    shown = env.run("datasette", "--version")
    assert (shown.returncode, shown.stdout.strip()) == (0, f"datasette, version {version}"), shown
    listed = env.run("datasette", "plugins")
    assert listed.returncode == 0, listed.stderr
    assert "doorman" in [plugin["name"] for plugin in json.loads(listed.stdout)]
    exercised(f"Datasette {version} beside doorman's core install, without httpx")


def test_the_same_database_mode_needs_no_extra(
    core_beside_1_0: tuple[str, Environment], serve: ServeProcess, tmp_path: Path
) -> None:
    version, env = core_beside_1_0
    with datasette_serving(
        [env.script("datasette")],
        doc_blocks("yaml")[0],
        config_flag=config_flag(version),
        data=make_data(tmp_path),
        cwd=serve.directory,
    ) as url:
        check_served_access(url, serve)


def test_the_gate_mode_without_httpx_names_the_extra(
    core_beside_1_0: tuple[str, Environment], tmp_path: Path
) -> None:
    version, env = core_beside_1_0
    data = make_data(tmp_path)
    config = tmp_path / "datasette.yaml"
    config.write_text(yaml.safe_dump(with_access({"api_url": "http://127.0.0.1:1/-/whoami"})))
    command = ["datasette", "serve", str(data), config_flag(version), str(config)]
    result = env.run(*command, "--get", "/-/versions.json")
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "the Datasette plugin's api_url needs httpx, which is not installed: "
            "pip install 'doorman[datasette]'"
        )
    ), result.stderr
