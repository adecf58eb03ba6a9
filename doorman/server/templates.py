"""Jinja2 pages: doorman's templates, overridable from ``template_dir``, extendable by plugins."""

from __future__ import annotations

import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..auth.csrf import CSRF
from ..plugins import all_results
from .devices import describe

__all__ = ["Templates"]

_PACKAGE_TEMPLATES = Path(__file__).parent / "templates"


class Templates:
    """Renders pages with the context every page needs: actor, CSRF token, links, site name."""

    def __init__(
        self, doorman: Any, *, template_dir: str | None, site_name: str, prefix: str, csrf: CSRF
    ):
        loaders: list[jinja2.BaseLoader] = []
        if template_dir:
            loaders.append(jinja2.FileSystemLoader(template_dir))
        loaders.append(jinja2.FileSystemLoader(_PACKAGE_TEMPLATES))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,
            enable_async=True,
            undefined=jinja2.StrictUndefined,
        )
        # No field_errors unless a view gives some (templates/_fields.html shows them).
        no_errors: MappingProxyType[str, list[str]] = MappingProxyType({})
        self.env.globals.update(site_name=site_name, prefix=prefix, field_errors=no_errors)
        self.env.filters.update(
            when=_when, ago=_ago, ago_tag=_ago_tag, device=describe, scopes=_scopes
        )
        self.doorman = doorman
        self.csrf = csrf
        doorman.plugins.hook.prepare_jinja2_environment(env=self.env, doorman=doorman)

    async def render(
        self, request: Request, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """The page ``name``; personal pages are never cached."""
        actor = request.scope.get("actor")
        hook = self.doorman.plugins.hook
        extra: dict[str, Any] = {}
        for found in await all_results(
            hook.extra_template_vars, template=name, request=request, doorman=self.doorman
        ):
            extra.update(found)
        links: list[dict[str, str]] = []
        for found in await all_results(
            hook.menu_links, doorman=self.doorman, actor=actor, request=request
        ):
            links.extend(found)
        page = await self.env.get_template(name).render_async(
            {
                **extra,
                **context,
                "request": request,
                "actor": actor,
                "csrftoken": self.csrf.token(request.scope),
                "menu_links": links,
            }
        )
        return HTMLResponse(page, status, headers={"cache-control": "no-store"})


def _when(timestamp: float | None) -> str:
    """A Unix time as "2026-11-25 19:30 UTC"."""
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def _ago(timestamp: float | None) -> str:
    """How long ago, in words a person reads at a glance."""
    if timestamp is None:
        return "never"
    seconds = max(0, int(time.time() - timestamp))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' * (count != 1)} ago"
    return "just now"


def _ago_tag(timestamp: float | None) -> Markup:
    """``_ago`` in a ``<time>`` element that holds the exact moment, shown on hover."""
    if timestamp is None:
        return Markup("never")
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment, _when(timestamp), _ago(timestamp)
    )


def _scopes(scopes: tuple[str, ...] | None) -> str:
    """What an API token may do: its scopes, or any action when it has none."""
    if scopes is None:
        return "any action"
    return ", ".join(scopes) or "nothing"
