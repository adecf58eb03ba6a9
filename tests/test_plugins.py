"""Plugin hooks: specs and their docs, loading, the three answer forms, the default plugins."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from doorman import default_plugins, hookspecs
from doorman._types import ASGIApp, Message
from doorman.exceptions import ConfigError
from doorman.hookspecs import hookimpl
from doorman.plugins import (
    DEFAULT_PLUGINS,
    all_results,
    await_value,
    first_result,
    list_plugins,
    make_plugin_manager,
)

ROOT = Path(__file__).parent.parent
SPECS = {
    name: function
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "doorman_spec")
}
DOORMAN = SimpleNamespace(name="fake doorman")
ACTOR = {"id": "alice", "username": "alice"}


def test_there_are_fourteen_hooks() -> None:
    assert len(SPECS) == 14


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hookspec_has_a_one_line_docstring(name: str) -> None:
    doc = SPECS[name].__doc__
    assert doc and doc.strip() and "\n" not in doc.strip()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_has_a_heading_in_the_docs(name: str) -> None:
    assert f"### `{name}`\n" in (ROOT / "docs" / "plugins.md").read_text()


def test_no_hook_stops_at_the_first_answer() -> None:
    # An awaitable that resolves to None must not end the chain: callers use first_result.
    pm = make_plugin_manager(entry_points=False)
    for name in SPECS:
        spec = getattr(pm.hook, name).spec
        assert spec is not None and not spec.opts["firstresult"], name


# await_value: the three forms


async def coroutine_of(value: object) -> object:
    return value


@pytest.mark.anyio
async def test_await_value_returns_a_value() -> None:
    assert await await_value(42) == 42
    assert await await_value(None) is None


@pytest.mark.anyio
async def test_await_value_awaits_an_awaitable() -> None:
    assert await await_value(coroutine_of(42)) == 42


@pytest.mark.anyio
async def test_await_value_calls_a_function_and_awaits_its_result() -> None:
    assert await await_value(lambda: coroutine_of(42)) == 42
    assert await await_value(lambda: 42) == 42


@pytest.mark.anyio
async def test_await_value_does_not_call_a_class_or_when_told_not_to() -> None:
    assert await await_value(dict) is dict

    def app() -> None:
        raise AssertionError("called")

    assert await await_value(app, call=False) is app


def actor_plugin(form: str) -> object:
    class Plugin:
        @hookimpl
        def actor_from_request(self, doorman: Any, scope: Any) -> object:
            actor = {"id": scope["user"], "via": "header"}
            if form == "value":
                return actor
            if form == "awaitable":
                return coroutine_of(actor)
            return lambda: coroutine_of(actor)

    return Plugin()


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["value", "awaitable", "function"])
async def test_each_form_gives_the_same_actor(form: str) -> None:
    pm = make_plugin_manager(plugins=[actor_plugin(form)], entry_points=False)
    actor = await first_result(pm.hook.actor_from_request, doorman=DOORMAN, scope={"user": "bo"})
    assert actor == {"id": "bo", "via": "header"}


class Answers:
    """A plugin answering actor_from_request with its answer, or what calling that gives."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    @hookimpl
    def actor_from_request(self, doorman: Any, scope: Any) -> object:
        return self.answer() if callable(self.answer) else self.answer


class AnswersFirst(Answers):
    @hookimpl(tryfirst=True)
    def actor_from_request(self, doorman: Any, scope: Any) -> object:
        return super().actor_from_request(doorman, scope)


@pytest.mark.anyio
async def test_first_result_skips_none_and_coroutines_resolving_to_none() -> None:
    plugins = [
        Answers({"id": "last"}),
        Answers(lambda: coroutine_of(None)),
        Answers(None),
    ]
    # pluggy calls the last registered first, so the "last" answer is reached last.
    pm = make_plugin_manager(plugins=plugins, entry_points=False)
    actor = await first_result(pm.hook.actor_from_request, doorman=DOORMAN, scope={})
    assert actor == {"id": "last"}


@pytest.mark.anyio
async def test_first_result_respects_tryfirst_and_leaves_the_rest_unresolved() -> None:
    called = []

    def later() -> object:
        called.append("later")
        return coroutine_of({"id": "later"})

    pending = coroutine_of({"id": "pending"})
    plugins = [
        AnswersFirst(coroutine_of({"id": "first"})),
        Answers(lambda: later),
        Answers(pending),
    ]
    pm = make_plugin_manager(plugins=plugins, entry_points=False)
    actor = await first_result(pm.hook.actor_from_request, doorman=DOORMAN, scope={})
    assert actor == {"id": "first"}
    assert called == []  # a function answer is called only when needed
    assert inspect.getcoroutinestate(pending) == "CORO_CLOSED"  # no "never awaited" warning


@pytest.mark.anyio
async def test_first_result_gives_none_when_nobody_answers() -> None:
    pm = make_plugin_manager(entry_points=False)
    assert await first_result(pm.hook.actor_from_request, doorman=DOORMAN, scope={}) is None


@pytest.mark.anyio
async def test_all_results_resolves_every_answer_in_order() -> None:
    plugins = [Answers({"id": "c"}), Answers(None), Answers(lambda: coroutine_of({"id": "a"}))]
    pm = make_plugin_manager(plugins=plugins, entry_points=False)
    answers = await all_results(pm.hook.actor_from_request, doorman=DOORMAN, scope={})
    assert answers == [{"id": "a"}, {"id": "c"}]


@pytest.mark.anyio
async def test_an_error_in_one_answer_closes_the_coroutines_after_it() -> None:
    async def boom() -> None:
        raise RuntimeError("boom")

    never = coroutine_of({"id": "never"})
    pm = make_plugin_manager(plugins=[Answers(never), Answers(boom)], entry_points=False)
    with pytest.raises(RuntimeError, match="boom"):
        await all_results(pm.hook.actor_from_request, doorman=DOORMAN, scope={})
    assert inspect.getcoroutinestate(never) == "CORO_CLOSED"


# Loading

PLUGIN_SOURCE = """
from doorman.hookspecs import hookimpl

@hookimpl
def actor_from_request(doorman, scope):
    return {"id": "%s"}
"""


def write_plugin(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Any:
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("doorman_plugins.")]:
        del sys.modules[name]


@pytest.mark.anyio
async def test_plugins_dir_loads_each_python_file(plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "alpha", PLUGIN_SOURCE % "from-alpha")
    write_plugin(plugins_dir, "beta", PLUGIN_SOURCE % "from-beta")
    (plugins_dir / "notes.txt").write_text("not a plugin")
    pm = make_plugin_manager(plugins_dir=plugins_dir, entry_points=False)
    answers = await all_results(pm.hook.actor_from_request, doorman=DOORMAN, scope={})
    assert answers == [{"id": "from-beta"}, {"id": "from-alpha"}]  # loaded by name, LIFO
    assert [p["name"] for p in list_plugins(pm)] == [
        "doorman_plugins.alpha",
        "doorman_plugins.beta",
    ]


def test_a_broken_plugin_file_fails_at_start_up(plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "good", PLUGIN_SOURCE % "good")
    write_plugin(plugins_dir, "broken", "import no_such_module_anywhere\n")
    with pytest.raises(ConfigError, match=r"broken\.py.*ModuleNotFoundError.*no_such_module"):
        make_plugin_manager(plugins_dir=plugins_dir, entry_points=False)
    assert "doorman_plugins.broken" not in sys.modules


def test_a_plugin_file_with_a_syntax_error_fails_at_start_up(plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "typo", "def (:\n")
    with pytest.raises(ConfigError, match=r"typo\.py.*SyntaxError"):
        make_plugin_manager(plugins_dir=plugins_dir, entry_points=False)


def test_a_missing_plugins_dir_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        make_plugin_manager(plugins_dir=tmp_path / "nowhere", entry_points=False)


def test_a_misspelt_hook_fails_at_start_up() -> None:
    class Typo:
        @hookimpl
        def actor_from_requests(self, doorman: Any, scope: Any) -> None:
            return None

    with pytest.raises(ConfigError, match="actor_from_requests"):
        make_plugin_manager(plugins=[Typo()], entry_points=False)


def test_an_unknown_hook_argument_fails_at_start_up() -> None:
    class Wrong:
        @hookimpl
        def permission_allowed(self, doorman: Any, actor: Any, verb: str) -> None:
            return None

    with pytest.raises(ConfigError, match="verb"):
        make_plugin_manager(plugins=[Wrong()], entry_points=False)


def test_the_same_plugin_twice_fails_at_start_up() -> None:
    module = ModuleType("twice")
    with pytest.raises(ConfigError, match="twice"):
        make_plugin_manager(plugins=[module, module], entry_points=False)


def test_default_plugins_are_registered_but_not_listed() -> None:
    pm = make_plugin_manager(entry_points=False)
    assert pm.get_plugin("doorman.default_plugins") is default_plugins
    assert DEFAULT_PLUGINS == ("doorman.default_plugins",)
    assert list_plugins(pm) == []


def test_list_plugins_names_instances_by_class_and_lists_their_hooks() -> None:
    pm = make_plugin_manager(plugins=[Answers(None), Answers(None)], entry_points=False)
    assert list_plugins(pm) == [
        {"name": f"{__name__}.Answers", "hooks": ["actor_from_request"], "version": None},
        {"name": f"{__name__}.Answers-2", "hooks": ["actor_from_request"], "version": None},
    ]


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real distribution, doorman-example 1.2, on sys.path with a ``doorman`` entry point."""
    module = "doorman_example_plugin_for_tests"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(PLUGIN_SOURCE % "from-entry-point"))
    dist_info = tmp_path / "doorman_example-1.2.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: doorman-example\nVersion: 1.2\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[doorman]\nexample = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "example"
    sys.modules.pop(module, None)


@pytest.mark.anyio
async def test_entry_points_are_loaded_with_their_version(installed_plugin: str) -> None:
    pm = make_plugin_manager()
    assert await first_result(pm.hook.actor_from_request, doorman=DOORMAN, scope={}) == {
        "id": "from-entry-point"
    }
    assert list_plugins(pm) == [
        {"name": installed_plugin, "hooks": ["actor_from_request"], "version": "1.2"}
    ]


def test_entry_points_can_be_left_out(installed_plugin: str) -> None:
    assert not make_plugin_manager(entry_points=False).has_plugin(installed_plugin)


@pytest.mark.anyio
async def test_explicit_plugins_are_called_before_installed_ones(installed_plugin: str) -> None:
    pm = make_plugin_manager(plugins=[Answers({"id": "explicit"})])
    assert await first_result(pm.hook.actor_from_request, doorman=DOORMAN, scope={}) == {
        "id": "explicit"
    }


@pytest.mark.e2e
def test_importing_doorman_loads_no_plugin(installed_plugin: str, tmp_path: Path) -> None:
    code = (
        "import sys, doorman, doorman.plugins, doorman.hookspecs, doorman.default_plugins\n"
        "import doorman.accounts.permissions\n"
        "assert 'doorman_example_plugin_for_tests' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# The default forbidden page


async def answer(
    message: str, *, actor: object = None, headers: dict[str, str] | None = None, **scope: Any
) -> tuple[int, dict[str, str], bytes]:
    """Drive the default ``forbidden`` app as a server would; return status, headers, body."""
    pm = make_plugin_manager(entry_points=False)
    request: dict[str, Any] = {
        "type": "http",
        "actor": actor,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        **scope,
    }
    app: ASGIApp = await first_result(
        pm.hook.forbidden, doorman=DOORMAN, scope=request, message=message
    )
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(request, receive, send)
    start, body = sent
    assert body["type"] == "http.response.body"
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body["body"]


@pytest.mark.anyio
async def test_forbidden_is_403_for_a_signed_in_actor_and_401_for_anonymous() -> None:
    assert (await answer("no", actor=ACTOR))[0] == 403
    assert (await answer("no"))[0] == 401


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        (None, "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "html"),
        ("application/json, text/html;q=0.5", "json"),
        ("text/html, application/json", "html"),
        ("text/html;q=0.5, application/json;q=0.9", "json"),
        ("text/html;q=0", "json"),
        ("text/html;q=nonsense", "json"),
        ("text/html;q=nan", "json"),
        (";;,,=;q", "json"),
    ],
)
async def test_forbidden_answers_json_or_html_as_accepted(accept: str | None, kind: str) -> None:
    headers = {"accept": accept} if accept is not None else {}
    status, response_headers, body = await answer("Admins only", actor=ACTOR, headers=headers)
    assert status == 403
    assert response_headers["cache-control"] == "no-store"
    assert int(response_headers["content-length"]) == len(body)
    if kind == "json":
        assert response_headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": "Admins only"}
    else:
        assert response_headers["content-type"] == "text/html; charset=utf-8"
        assert b"<p>Admins only</p>" in body and b"Forbidden" in body


@pytest.mark.anyio
async def test_forbidden_escapes_the_message_in_html() -> None:
    message = '<script>alert("x")</script> & more'
    _, _, body = await answer(message, actor=ACTOR, headers={"accept": "text/html"})
    assert b"<script>" not in body
    assert b"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in body
    _, _, body = await answer(message, actor=ACTOR, headers={"accept": "application/json"})
    assert json.loads(body) == {"error": message}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [(None, False), ("Basic YTpi", False), ("Bearer abc", True), ("bearer abc", True)],
)
async def test_a_401_challenges_bearer_only_for_bearer_requests(
    authorization: str | None, challenge: bool
) -> None:
    headers = {"authorization": authorization} if authorization else {}
    status, response_headers, _ = await answer("Sign in", headers=headers)
    assert status == 401
    assert ("www-authenticate" in response_headers) is challenge
    if challenge:
        assert response_headers["www-authenticate"] == "Bearer"


@pytest.mark.anyio
async def test_a_403_never_challenges() -> None:
    _, response_headers, _ = await answer("no", actor=ACTOR, headers={"authorization": "Bearer x"})
    assert "www-authenticate" not in response_headers


@pytest.mark.anyio
async def test_forbidden_closes_a_websocket_before_accepting_it() -> None:
    pm = make_plugin_manager(entry_points=False)
    scope: dict[str, Any] = {"type": "websocket", "headers": [], "actor": None}
    app = await first_result(pm.hook.forbidden, doorman=DOORMAN, scope=scope, message="no")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.anyio
async def test_a_plugin_replaces_the_default_forbidden_page() -> None:
    async def teapot(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("only compared, not run")

    class Plugin:
        @hookimpl
        def forbidden(self, doorman: Any, scope: Any, message: str) -> object:
            return teapot  # an ASGI app: a function, so it is returned, not called

    pm = make_plugin_manager(plugins=[Plugin()], entry_points=False)
    scope = {"type": "http", "headers": []}
    assert (
        await first_result(pm.hook.forbidden, doorman=DOORMAN, scope=scope, message="x") is teapot
    )
