"""``doorman protect MODULE:APP``: serve any ASGI app behind sign-in, under uvicorn."""

from __future__ import annotations

import os

import click

from ..settings import SERVE_SETTINGS_ENV, Settings
from ._options import one_line_errors, run, settings_options
from ._uvicorn import check_can_listen, run_uvicorn
from .serve import SERVE_SETTINGS, prepare_serve


@click.command("protect")
@click.argument("spec", metavar="MODULE:APP")
@click.option("--factory", is_flag=True, help="APP is a function that returns the ASGI app.")
@click.option(
    "--app-dir",
    default=".",
    metavar="DIR",
    show_default=True,
    help="Directory to import MODULE from (put first on the Python path).",
)
@settings_options(*SERVE_SETTINGS, "public_paths", existing_database=False)
def protect(settings: Settings, spec: str, factory: bool, app_dir: str) -> None:
    """Serve the ASGI app MODULE:APP behind sign-in (uvicorn).

    doorman's pages answer under the route prefix (/-/); every other path needs
    a signed-in user allowed to `view`, except the public paths. The app finds
    the user in scope["actor"]. The database, users and settings are those of
    `doorman serve`.
    """
    check_can_listen(settings)
    with one_line_errors():
        from ..server.app import create_app
        from ..server.protect import PROTECT_APP_ENV, AppTarget
        from ..server.workers import settled

        target = AppTarget(spec, factory=factory, app_dir=os.path.abspath(app_dir))
        app = target.load() if settings.workers == 1 else target.check()
    resolved, token = run(prepare_serve(settings))
    if resolved.workers > 1:  # each worker imports the app itself: uvicorn needs a string
        os.environ[SERVE_SETTINGS_ENV] = resolved.to_json()
        os.environ[PROTECT_APP_ENV] = target.to_json()
        run_uvicorn("doorman.server.workers:protect_app", resolved, token)
        return
    with one_line_errors():  # a factory, so that the app is built inside uvicorn's event loop
        run_uvicorn(lambda: settled(create_app(resolved, protected=app)), resolved, token)
