"""The floor of benchmarks/load.py: a bare ASGI app, served by uvicorn as `doorman serve` is.

The app answers every request 200 with one header and three bytes. uvicorn runs
it with the options `doorman serve` gives uvicorn (`uvicorn_options`: one worker,
uvloop and httptools, proxy headers, lifespan on, no access log of uvicorn's), so
that what separates the two servers in one run is doorman's own work.

    python benchmarks/bare_app.py --port 8001
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from doorman.cli._uvicorn import uvicorn_options
from doorman.config import Settings

BODY = b"OK\n"
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]}
BODY_MESSAGE = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(START)
    await send(BODY_MESSAGE)


def make_app() -> Any:
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings.from_mapping({"host": args.host, "port": args.port, "workers": 1})
    uvicorn.run(make_app, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
