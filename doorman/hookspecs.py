"""The plugin hooks: specifications only. See docs/plugins.md for what each one is for.

``doorman`` is the ``Doorman`` object, as Datasette hooks receive ``datasette``.
Most hooks may answer in three forms (``Answer[T]``): a value, an awaitable, or a
function of no arguments returning either; ``doorman.plugins.await_value`` resolves
them. No hook is ``firstresult=True``: an awaitable that resolves to None must not
stop the chain, so callers use ``first_result`` or ``all_results`` instead.
``forbidden`` and ``asgi_wrapper`` answer with functions, so for them only the
value and awaitable forms apply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import pluggy

from ._types import ASGIApp, Scope

if TYPE_CHECKING:
    import click

    from .events import LoginEvent, LoginFailedEvent, LogoutEvent

__all__ = ["Answer", "hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("doorman")
hookimpl = pluggy.HookimplMarker("doorman")

T = TypeVar("T")
#: What a hook may return: a value, an awaitable, or a function of no arguments returning either.
Answer: TypeAlias = T | Awaitable[T] | Callable[[], T | Awaitable[T]]

Actor = dict[str, Any]


@hookspec
def actor_from_request(doorman: Any, scope: Scope) -> Answer[Actor | None]:
    """Return the actor for this ASGI scope (read its headers), or None to let others decide."""


@hookspec
def permission_allowed(
    doorman: Any, actor: Actor | None, action: str, resource: str | None
) -> Answer[bool | None]:
    """Return True to allow, False to deny (any False wins), None to have no opinion."""


@hookspec
def forbidden(doorman: Any, scope: Scope, message: str) -> ASGIApp | Awaitable[ASGIApp] | None:
    """Return an ASGI app that answers a refused request, or None for the next plugin."""


@hookspec
def startup(doorman: Any) -> Answer[None]:
    """Run once when doorman starts, before the first request; may be async."""


@hookspec
def asgi_wrapper(doorman: Any) -> Callable[[ASGIApp], ASGIApp] | None:
    """Return a function that takes the ASGI app and returns a wrapped one, or None."""


@hookspec
def register_routes(doorman: Any) -> Answer[list[tuple[str, Callable[..., Any]]] | None]:
    """Return (path, endpoint) pairs to add to the sign-in server."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``doorman`` command group (synchronous)."""


@hookspec
def prepare_jinja2_environment(env: Any, doorman: Any) -> None:
    """Change the sign-in server's Jinja2 environment: filters, globals (synchronous)."""


@hookspec
def extra_template_vars(template: str, request: Any, doorman: Any) -> Answer[dict[str, Any] | None]:
    """Return extra variables for rendering ``template``."""


@hookspec
def menu_links(
    doorman: Any, actor: Actor | None, request: Any
) -> Answer[list[dict[str, str]] | None]:
    """Return links ({"href": ..., "label": ...}) for the sign-in server's menu."""


@hookspec
def validate_password(doorman: Any, password: str, username: str) -> Answer[str | list[str] | None]:
    """Return a problem with this new password (or a list of them), or None when it is fine."""


@hookspec
def on_login(doorman: Any, event: LoginEvent) -> Answer[None]:
    """Be told that an actor signed in."""


@hookspec
def on_logout(doorman: Any, event: LogoutEvent) -> Answer[None]:
    """Be told that a session ended on request."""


@hookspec
def on_login_failed(doorman: Any, event: LoginFailedEvent) -> Answer[None]:
    """Be told that a sign-in was refused (the event never holds the password)."""
