"""Loading plugins into a pluggy manager, and calling hooks whose answers may be awaitable.

Nothing is loaded when a doorman module is imported: ``make_plugin_manager`` is
the one explicit call, made when the ``Doorman`` object is built, and a plugin
that cannot be loaded raises ``ConfigError`` there rather than on a request.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .exceptions import ConfigError

__all__ = [
    "DEFAULT_PLUGINS",
    "all_results",
    "await_value",
    "first_result",
    "list_plugins",
    "make_plugin_manager",
]

#: Built-in behaviour, registered first (so called last) as ordinary plugins.
DEFAULT_PLUGINS = ("doorman.default_plugins",)
#: Hooks whose answer is itself a function: it is awaited when awaitable, never called.
_FUNCTION_ANSWERS = frozenset({"forbidden", "asgi_wrapper"})


async def await_value(value: Any, *, call: bool = True) -> Any:
    """Resolve a hook's answer, in any of its three forms.

    - a value is returned as it is;
    - an awaitable (a coroutine, a future) is awaited;
    - a function (not a class) is called with no arguments, and its result
      awaited when it is awaitable. ``call=False`` skips this form, for answers
      that are themselves functions (an ASGI app, a wrapper).
    """
    if inspect.isawaitable(value):
        return await value
    if call and callable(value) and not inspect.isclass(value):
        value = value()
        if inspect.isawaitable(value):
            return await value
    return value


def _close(pending: Iterable[Any]) -> None:
    """Close coroutines that will not be awaited, so none warns "never awaited"."""
    for value in pending:
        if inspect.iscoroutine(value):
            value.close()


async def first_result(hook_caller: pluggy.HookCaller, **kwargs: Any) -> Any:
    """Call every implementation, then resolve answers in pluggy's order; return the first not None.

    Answers after the first one are never resolved: their coroutines are closed
    and their functions not called.
    """
    call = hook_caller.name not in _FUNCTION_ANSWERS
    results = list(hook_caller(**kwargs))
    for index, value in enumerate(results):
        try:
            resolved = await await_value(value, call=call)
        except BaseException:
            _close(results[index + 1 :])
            raise
        if resolved is not None:
            _close(results[index + 1 :])
            return resolved
    return None


async def all_results(hook_caller: pluggy.HookCaller, **kwargs: Any) -> list[Any]:
    """Call every implementation and resolve each answer in order; return those not None."""
    call = hook_caller.name not in _FUNCTION_ANSWERS
    results = list(hook_caller(**kwargs))
    resolved = []
    for index, value in enumerate(results):
        try:
            answer = await await_value(value, call=call)
        except BaseException:
            _close(results[index + 1 :])
            raise
        if answer is not None:
            resolved.append(answer)
    return resolved


def make_plugin_manager(
    *,
    plugins: Iterable[object] = (),
    plugins_dir: str | os.PathLike[str] | None = None,
    entry_points: bool = True,
) -> pluggy.PluginManager:
    """A plugin manager with doorman's hooks and its plugins, checked now.

    Registered in this order (pluggy calls the last registered first): the
    default plugins; installed packages' entry points in the group ``doorman``
    (when ``entry_points``); each ``*.py`` file in ``plugins_dir``, by name;
    each object of ``plugins`` (a module or an instance). A plugin that fails
    to import, names an unknown hook or takes an unknown argument raises
    ``ConfigError``.
    """
    pm = pluggy.PluginManager("doorman")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        _register(pm, importlib.import_module(name), name)
    if entry_points:
        try:
            pm.load_setuptools_entrypoints("doorman")
        except Exception as error:
            raise ConfigError(
                f"a plugin of the 'doorman' entry-point group could not be loaded: "
                f"{type(error).__name__}: {error}; fix or uninstall that package"
            ) from error
    if plugins_dir is not None:
        for module in _load_directory(Path(plugins_dir)):
            _register(pm, module, module.__name__)
    for plugin in plugins:
        _register(pm, plugin, _name_of(pm, plugin))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        raise ConfigError(f"{error}; doorman's hooks are listed in docs/plugins.md") from error
    return pm


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as error:
        raise ConfigError(f"plugin {name!r} could not be registered: {error}") from error


def _name_of(pm: pluggy.PluginManager, plugin: object) -> str:
    """A module's name; for an instance, its class's, numbered when taken by another one."""
    name = getattr(plugin, "__name__", None)
    if isinstance(name, str):
        return name
    base = f"{type(plugin).__module__}.{type(plugin).__qualname__}"
    name, number = base, 1
    while pm.has_plugin(name):
        number += 1
        name = f"{base}-{number}"
    return name


def _load_directory(directory: Path) -> list[Any]:
    if not directory.is_dir():
        raise ConfigError(f"plugins_dir {str(directory)!r} is not a directory")
    modules = []
    for path in sorted(directory.glob("*.py")):
        name = f"doorman_plugins.{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
            raise ConfigError(f"plugin file {str(path)!r} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # as an import would: dataclasses and pickling look here
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            sys.modules.pop(name, None)
            raise ConfigError(
                f"plugin file {str(path)!r} failed to import: {type(error).__name__}: {error}"
            ) from error
        modules.append(module)
    return modules


def list_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Plugins other than the defaults: ``name``, ``hooks``, ``version`` (None if no package)."""
    versions = {id(plugin): dist.version for plugin, dist in pm.list_plugin_distinfo()}
    found = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None or name in DEFAULT_PLUGINS:
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        found.append({"name": name, "hooks": hooks, "version": versions.get(id(plugin))})
    return sorted(found, key=lambda plugin: str(plugin["name"]))
