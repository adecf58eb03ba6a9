"""Jinja2 templates compiled once per test process, not once per app a test builds.

Each sign-in server has Jinja2 environments of its own (pages, mail), and each
compiles a template on its first use: lexing, parsing and compiling the same
few templates again for each of the hundreds of apps the tests build, some
10 ms each. This bytecode cache keeps the compiled code for every environment
of the process, under a key that holds all that the compiled code depends on:
the environment's syntax and compiler settings, the template's autoescape
setting, its name, its file and a checksum of its source. A template changed
on disk, or an environment set up differently, compiles anew.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from types import CodeType
from typing import Any

import jinja2
from jinja2.bccache import Bucket


def _settings(environment: jinja2.Environment) -> tuple[Any, ...]:
    """What, besides the source, shapes a template's compiled code."""
    return (
        environment.block_start_string,
        environment.block_end_string,
        environment.variable_start_string,
        environment.variable_end_string,
        environment.comment_start_string,
        environment.comment_end_string,
        environment.line_statement_prefix,
        environment.line_comment_prefix,
        environment.trim_blocks,
        environment.lstrip_blocks,
        environment.newline_sequence,
        environment.keep_trailing_newline,
        tuple(sorted(environment.extensions)),
        environment.optimized,
        environment.finalize is not None,
        environment.is_async,
        environment.code_generator_class,
        environment.context_class,
    )


class CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates, shared by every environment in this process (in memory)."""

    def __init__(self) -> None:
        self._code: dict[tuple[str, str], CodeType] = {}

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> Bucket:
        autoescape = environment.autoescape
        if callable(autoescape):
            autoescape = autoescape(name)
        key = repr((_settings(environment), autoescape, name, filename))
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        bucket.code = self._code.get((bucket.key, bucket.checksum))

    def dump_bytecode(self, bucket: Bucket) -> None:
        if bucket.code is not None:
            self._code[(bucket.key, bucket.checksum)] = bucket.code


def shared_by(classes: list[type], cache: CompiledTemplates) -> Iterator[None]:
    """While the generator runs: each new instance of ``classes`` uses ``cache`` for ``.env``."""
    originals = {cls: cls.__init__ for cls in classes}  # type: ignore[misc]

    def sharing(init: Any) -> Any:
        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            self.env.bytecode_cache = cache

        return __init__

    for cls, init in originals.items():
        cls.__init__ = sharing(init)  # type: ignore[misc]
    try:
        yield
    finally:
        for cls, init in originals.items():
            cls.__init__ = init  # type: ignore[misc]
