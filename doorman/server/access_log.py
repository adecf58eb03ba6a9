"""One line per request on the ``doorman.access`` logger, in place of uvicorn's access log.

Two reasons to have our own. uvicorn's line carries the query string, and
doorman's URLs carry secrets there (the one-time ``/-/setup?token=``) and
return addresses (``next``, ``rd``) that are nobody's business in a log:
this one logs the path alone, with the token of a one-time link
(``/-/password-reset/<token>``, ``/-/verify-email/...``, ``/-/invite/...``,
``/-/sign-in-link/...``) written as ``<token>``. And uvicorn formats each line through a copy
of the record and a colouring formatter, about a fifth of a forward-auth
request's cost; this one hands ``logging`` a plain %-format.

The line: client address, method, path, HTTP version, status, milliseconds::

    127.0.0.1 "GET /-/auth HTTP/1.1" 200 0.6ms
"""

from __future__ import annotations

import copy
import logging
import re
import time
from typing import Any

from .._types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLogMiddleware", "access_log", "uvicorn_log_config"]

access_log = logging.getLogger("doorman.access")
_LINE = '%s "%s %s HTTP/%s" %d %.1fms'
#: The last segment after a link route, whatever the prefix; "new" holds no token.
_LINK_TOKEN = re.compile(
    r"(/(?:password-reset|verify-email|invite|sign-in-link)/)(?!new/?$)[^/]+(?=/?$)"
)


class AccessLogMiddleware:
    """Logs each http request once its response has started (status known) and ended."""

    def __init__(self, app: ASGIApp, logger: logging.Logger = access_log) -> None:
        self.app = app
        self.log = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before starting a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            client = scope.get("client")
            args = (
                client[0] if client else "-",
                scope["method"],
                _printable(scope.get("raw_path") or scope["path"].encode()),
                scope.get("http_version", "1.1"),
                status,
                (time.perf_counter() - started) * 1000,
            )
            # As log.info() does, minus its search of the stack for the caller's line,
            # which an access line has no use for: a third of the cost.
            self.log.handle(
                self.log.makeRecord(self.log.name, logging.INFO, "", 0, _LINE, args, None)
            )


def _printable(raw_path: bytes) -> str:
    """The path without its query string, control characters escaped (no forged lines)."""
    path = _LINK_TOKEN.sub(r"\1<token>", raw_path.split(b"?", 1)[0].decode("latin-1"))[:500]
    return path.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def uvicorn_log_config(access_log_on: bool) -> dict[str, Any]:
    """uvicorn's logging set-up, with doorman's loggers added and uvicorn's access log off.

    ``doorman.*`` (security events, stores that fail) goes to standard error at
    INFO, as uvicorn's own messages do; ``doorman.access`` to standard output.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["doorman"] = {"format": "%(levelname)-9s %(message)s"}
    config["handlers"]["doorman"] = {
        "formatter": "doorman",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["handlers"]["doorman.access"] = {
        "formatter": "doorman",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["doorman"] = {"handlers": ["doorman"], "level": "INFO", "propagate": False}
    config["loggers"]["doorman.access"] = {
        "handlers": ["doorman.access"],
        "level": "INFO" if access_log_on else "WARNING",
        "propagate": False,
    }
    return config
