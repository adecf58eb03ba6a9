"""The ``doorman`` command. Each command is thin: it calls library code.

Settings come from ``load_settings`` (defaults < doorman.toml < DOORMAN_* <
flags); the flags are shared decorators (``_options``). Every error is one line
on stderr and exit status 1, never a traceback. A module per command group:
``serve``, ``protect``, ``users``, ``sessions``, ``tokens``, ``db``, ``events``,
``plugins`` and ``mail``.
"""

from __future__ import annotations

from typing import Any

import click

from .._version import __version__
from ..plugins import make_plugin_manager
from . import db, events, mail, plugins, protect, serve, sessions, tokens, users
from ._options import one_line

__all__ = ["DoormanGroup", "main"]


class DoormanGroup(click.Group):
    """The ``doorman`` group: plugins' ``register_commands`` run once, before it does."""

    plugin_commands_loaded = False

    def main(self, *args: Any, **kwargs: Any) -> Any:
        self.load_plugin_commands()
        return super().main(*args, **kwargs)

    def load_plugin_commands(self) -> None:
        """Let installed plugins (entry points only) add commands; a broken one is one line."""
        if self.plugin_commands_loaded:
            return
        self.plugin_commands_loaded = True
        try:
            make_plugin_manager().hook.register_commands(cli=self)
        except Exception as error:  # a plugin's own code may raise anything
            message = one_line(f"{type(error).__name__}: {error}")
            click.echo(f"doorman: plugin commands not loaded: {message}", err=True)


@click.group(cls=DoormanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="doorman")
def main() -> None:
    """doorman: sessions, accounts and sign-in for ASGI apps."""


main.add_command(serve.serve)
main.add_command(protect.protect)
main.add_command(users.users)
main.add_command(sessions.sessions)
main.add_command(tokens.tokens)
main.add_command(db.db_group)
main.add_command(events.events)
main.add_command(plugins.plugins_command)
main.add_command(mail.mail)
