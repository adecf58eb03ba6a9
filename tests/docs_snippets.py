"""Runs the Python blocks of one docs page as a reader would paste them.

``python tests/docs_snippets.py PAGE`` (the working directory is a scratch
directory): every ```python block of PAGE runs in a fresh module of its own.
A block that defines ``@hookimpl`` functions is then registered as a plugin,
so pluggy checks its hook names and arguments. Blocks that are pytest files
(their first line is ``# test_*.py`` or ``# conftest.py``) are written to the
scratch directory instead, a ``(continued)`` block appended to its file, for
the test to run pytest on; every other block is written there too, as
``snippet_<line>.py``, for a linter to look for undefined names. Prints one
line per failing block and exits 1.
"""

from __future__ import annotations

import re
import sys
import textwrap
import traceback
import types
from pathlib import Path

BLOCK = re.compile(r"^( *)```python\n(.*?)^ *```", flags=re.S | re.M)
TEST_FILE = re.compile(r"# ((?:test_\w+|conftest)\.py)( \(continued\))?$")


def blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, source) of each Python block, dedented when it sits in a list."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, textwrap.dedent(match.group(2))))
    return found


def run_block(name: str, source: str) -> None:
    module = types.ModuleType(name)
    module.__file__ = name + ".py"
    sys.modules[name] = module  # dataclasses and pickling-free imports look modules up
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    if "@hookimpl" in source:
        from doorman.plugins import make_plugin_manager

        make_plugin_manager(plugins=[module], entry_points=False)  # validates every hook


def main(page: Path) -> int:
    failures = 0
    for number, (line, source) in enumerate(blocks(page)):
        first = source.splitlines()[0] if source.strip() else ""
        test_file = TEST_FILE.fullmatch(first)
        if test_file:
            target = Path(test_file.group(1))
            mode = "a" if test_file.group(2) else "w"
            with target.open(mode) as out:
                out.write(source if mode == "w" else "\n\n" + source.split("\n", 1)[1])
            continue
        Path(f"snippet_{line}.py").write_text(source)
        try:
            run_block(f"docs_block_{number}", source)
        except BaseException as error:  # report every block, then fail
            failures += 1
            detail = traceback.format_exception_only(error)[-1].strip()
            print(f"{page.name}:{line}: {detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
