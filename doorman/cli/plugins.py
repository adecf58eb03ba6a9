"""``doorman plugins``: the plugins doorman loads."""

from __future__ import annotations

import click

from ..plugins import list_plugins, make_plugin_manager
from ..settings import Settings
from ._options import json_option, one_line_errors, settings_options
from ._output import echo_json, echo_table


@click.command("plugins")
@json_option
@settings_options("plugins_dir")
def plugins_command(settings: Settings, as_json: bool) -> None:
    """List the plugins doorman loads: name, version and hooks."""
    with one_line_errors():
        found = list_plugins(make_plugin_manager(plugins_dir=settings.plugins_dir))
    if as_json:
        echo_json(found)
        return
    rows = [(p["name"], p["version"] or "", ", ".join(p["hooks"])) for p in found]
    echo_table(("NAME", "VERSION", "HOOKS"), rows, "no plugins")
