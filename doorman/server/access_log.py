"""One line per request on the ``doorman.access`` logger, in place of uvicorn's access log.

Two reasons to have our own. uvicorn's line carries the query string, and
doorman's URLs carry secrets there (the one-time ``/-/setup?token=``) and
return addresses (``next``, ``rd``) that are nobody's business in a log:
this one logs the path alone, with the token of a one-time link
(``/-/password-reset/<token>``, ``/-/verify-email/...``, ``/-/invite/...``,
``/-/sign-in-link/...``) written as ``<token>``. And a forward-auth check is
cheap, so its line must be too. uvicorn formats each line through a copy of
the record and a colouring formatter; ``logging`` itself, through a
``LogRecord`` (which asks for the time, the thread, the process and the
caller), a lock, two %-formats and a write and flush per line: as much as the
check itself. ``doorman serve`` configures ``doorman.access`` with
``AccessLogHandler`` and ``LineFormatter``; while that is all there is to it
(no filters, no other handlers), the middleware hands the handler the line
itself, and the handler writes the lines of one turn of the event loop at
once. Any other set-up of the logger gets ordinary records.

The line: client address, method, path, HTTP version, status, milliseconds::

    INFO      127.0.0.1 "GET /-/auth HTTP/1.1" 200 0.6ms
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from typing import Any, TextIO
from urllib.parse import unquote

from .._types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "AccessLogHandler",
    "AccessLogMiddleware",
    "LineFormatter",
    "access_log",
    "uvicorn_log_config",
]

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
            self.write(scope, status, started)

    def enabled(self) -> bool:
        return self.log.isEnabledFor(logging.INFO)

    def write(self, scope: Scope, status: int, started: float) -> None:
        """The line for an http request answered ``status``, which arrived at ``started``.

        For answers made beside ``app`` too (the forward-auth fast path's), so
        that no ``send`` is wrapped for them; check ``enabled()`` first.
        """
        client = scope.get("client")
        args = (
            _address(client[0]) if client else "-",
            scope["method"],
            _printable(scope.get("raw_path") or scope["path"].encode()),
            scope.get("http_version", "1.1"),
            status,
            (time.perf_counter() - started) * 1000,
        )
        handler = _only_handler(self.log)
        if handler is not None:
            handler.write_line(_LINE % args)
        else:
            # As log.info() does, minus its search of the stack for the caller's line.
            self.log.handle(
                self.log.makeRecord(self.log.name, logging.INFO, "", 0, _LINE, args, None)
            )


def _only_handler(logger: logging.Logger) -> AccessLogHandler | None:
    """The handler that would write ``logger``'s INFO lines, if it alone would, as a line.

    That is: no filters on the logger, no propagation to other loggers' handlers,
    one ``AccessLogHandler`` with a ``LineFormatter``, no filters, and INFO in
    its level. Then the handler's output for a record is known without one.
    """
    handlers = logger.handlers
    if len(handlers) != 1 or logger.propagate or logger.filters or logger.disabled:
        return None
    handler = handlers[0]
    if (
        type(handler) is not AccessLogHandler
        or type(handler.formatter) is not LineFormatter
        or handler.filters
        or handler.level > logging.INFO
    ):
        return None
    return handler


class LineFormatter(logging.Formatter):
    """The level, padded to 9, then the message: ``INFO      127.0.0.1 "GET / ..."``."""

    def __init__(self) -> None:
        super().__init__("%(levelname)-9s %(message)s")


_INFO = f"{'INFO':<9} "  # what LineFormatter puts before an INFO message


class AccessLogHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes the lines of one turn of the event loop together.

    A busy worker answers many requests in one turn of its event loop; a write
    and a flush for each line would be a system call per request. Here the
    lines wait, in order, for a callback that the loop runs right after the
    turn; without a running loop (the command line, another thread) a line is
    written at once. ``flush()`` and ``close()`` write what waits, so logging's
    shutdown loses nothing.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []
        self._flush_due = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._add(line)

    def write_line(self, message: str) -> None:
        """Write ``message`` at INFO as ``emit`` would, without a record (see ``_only_handler``)."""
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            self._add(_INFO + message)

    def _add(self, line: str) -> None:
        self._waiting.append(line + self.terminator)
        if self._flush_due:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop runs here: write now
            self.flush()
            return
        self._flush_due = True

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_due = False
            if self._waiting:
                text, self._waiting = "".join(self._waiting), []
                try:
                    self.stream.write(text)
                except Exception:
                    self.handleError(logging.makeLogRecord({"msg": text}))
            super().flush()


def _printable(raw_path: bytes) -> str:
    """The path without its query string or a link's token, control characters escaped.

    Escaped, so that no path can forge a line of its own.
    """
    printed = _PRINTED.get(raw_path)
    if printed is not None:
        return printed
    if _PLAIN.fullmatch(raw_path) and not _LINK_ROUTE.search(raw_path):
        printed = raw_path.decode("ascii")  # most paths: nothing to cut, hide or escape
        if len(_PRINTED) >= _MAX_PRINTED:
            _PRINTED.clear()
        _PRINTED[raw_path] = printed
        return printed
    return _escaped(raw_path)


#: Plain paths seen lately, as printed: a proxy asks the same few all day.
_PRINTED: dict[bytes, str] = {}
_MAX_PRINTED = 256


def _escaped(raw_path: bytes) -> str:
    path = raw_path.split(b"?", 1)[0].decode("latin-1")
    if "%" in path and _LINK_TOKEN.search(decoded := unquote(path, encoding="latin-1")):
        path = decoded  # the route as the router reads it (/-/password%2Dreset/...)
    path = _LINK_TOKEN.sub(r"\1<token>", path)[:500]
    return path.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def _address(host: object) -> str:
    """The client's address as it is, or escaped: behind a proxy, a header wrote it."""
    text = str(host)
    if _ADDRESS.fullmatch(text):
        return text
    return (
        text[:100]
        .encode("unicode_escape")
        .decode("ascii")
        .replace('"', '\\"')
        .replace(" ", "\\x20")
    )


#: An IPv4 or IPv6 address, or a host name: nothing that could end the field.
_ADDRESS = re.compile(r"[0-9A-Za-z.:_\-\[\]%]{1,100}")

#: Printable ASCII but for the quote, the backslash, "?" and "%": a path that prints as it
#: is, unless it holds a link route (whose token ``_LINK_TOKEN`` hides). With "%" it may
#: spell one (``/-/password%2Dreset/``), which the router decodes: ``_escaped`` does too.
_PLAIN = re.compile(rb"[\x21\x23\x24\x26-\x3e\x40-\x5b\x5d-\x7e]{1,500}")
_LINK_ROUTE = re.compile(rb"/(?:password-reset|verify-email|invite|sign-in-link)/")


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
    config["formatters"]["doorman.access"] = {"()": f"{__name__}.LineFormatter"}
    config["handlers"]["doorman.access"] = {
        "formatter": "doorman.access",
        "class": f"{__name__}.AccessLogHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["doorman"] = {"handlers": ["doorman"], "level": "INFO", "propagate": False}
    config["loggers"]["doorman.access"] = {
        "handlers": ["doorman.access"],
        "level": "INFO" if access_log_on else "WARNING",
        "propagate": False,
    }
    return config
