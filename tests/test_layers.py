"""The package's layers, read from its own imports: arrows point down, and never in a circle.

docs/architecture.md draws the same picture. Every import counts, those inside
functions and under ``TYPE_CHECKING`` too: a module that needs a name from a
layer above it is in the wrong place (or the name is).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "doorman"

#: From the ground up. A module may import its own layer and those below it.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "ground",
        [
            "doorman._types",
            "doorman._version",
            "doorman._files",
            "doorman._paths",
            "doorman._batches",
            "doorman._extras",
            "doorman._lookalikes",
            "doorman._text",
            "doorman._times",
            "doorman._tasks",
            "doorman.exceptions",
            "doorman.events",
            "doorman.signing",
            "doorman._identity",
            "doorman._scope",
            "doorman._whoami",
            "doorman._answers",
            "doorman.hookspecs",
            "doorman.origins",
            "doorman.redirects",
            "doorman.plugins",
            "doorman.default_plugins",
        ],
    ),
    ("persistence", ["doorman.db"]),
    ("session stores", ["doorman.stores"]),
    ("sessions", ["doorman.sessions"]),
    ("accounts", ["doorman.accounts"]),
    ("core", ["doorman.core"]),
    ("ASGI auth", ["doorman.auth"]),
    (
        "settings",
        [
            "doorman._parsers",
            "doorman.settings",
            "doorman.mail",
            "doorman.assembly",
            "doorman.config",
        ],
    ),
    (
        "entry points",
        ["doorman.integrations", "doorman.gate", "doorman.testing", "doorman.transfer"],
    ),
    ("sign-in server", ["doorman.server"]),
    ("commands", ["doorman.cli", "doorman.__main__", "doorman"]),
]

#: Modules that only hand on names from below, where they used to live (public imports).
FORWARDS = {"doorman.auth.throttle", "doorman.auth.permissions"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The doorman modules ``name`` imports, wherever in the file the import is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            found |= submodules or {target}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {target for target in found if target in known and target != name}


def layer_of(name: str) -> int:
    best, depth = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = index, len(prefix)
    assert best >= 0, f"{name} is in no layer: add it to LAYERS (and docs/architecture.md)"
    return best


@functools.cache  # the two tests below read the same files: parsed once per process
def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_layer_above_it() -> None:
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "imports that climb a layer:\n" + "\n".join(upward)


def test_no_import_circles() -> None:
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            walk(name, [name])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_forwarding_modules_only_forward() -> None:
    """The modules kept for old import paths define nothing of their own."""
    for name in FORWARDS:
        tree = ast.parse(modules()[name].read_text())
        defined = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defined, f"{name} should only re-export, not define {defined[0].name}"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """An upward arrow and a circle, made on purpose, are seen."""
    known = {"doorman.core", "doorman.db.engine", "doorman.db.epochs"}
    engine = tmp_path / "engine.py"
    engine.write_text("from ..core import Doorman\nfrom .epochs import x\n")
    found = imports("doorman.db.engine", engine, known)
    assert found == {"doorman.core", "doorman.db.epochs"}
    assert layer_of("doorman.core") > layer_of("doorman.db.engine")
    inside = tmp_path / "inside.py"
    inside.write_text("def f():\n    if True:\n        from doorman.db import engine\n")
    assert imports("doorman.core", inside, known | {"doorman.db"}) == {"doorman.db.engine"}
