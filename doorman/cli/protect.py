"""``doorman protect MODULE:APP``: serve any ASGI app behind sign-in, under uvicorn."""

from __future__ import annotations

import os

import click

from ..config import SERVE_SETTINGS_ENV, Settings
from ._options import one_line_errors, run, settings_options
from .serve import SERVE_SETTINGS, _prepare_serve, _setup_url, uvicorn_options


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
    try:
        import uvicorn

        from ..server.app import create_app, settled
        from ..server.protect import PROTECT_APP_ENV, AppTarget
    except ImportError as error:
        raise click.ClickException(
            f"doorman protect cannot start ({error}); pip install 'doorman[server]'"
        ) from None
    target = AppTarget(spec, factory=factory, app_dir=os.path.abspath(app_dir))
    with one_line_errors():
        app = target.load() if settings.workers == 1 else target.check()
    resolved, token = run(_prepare_serve(settings))
    if token is not None:
        click.echo(f"Create the first admin at {_setup_url(resolved, token)}")
    options = uvicorn_options(resolved)
    if resolved.workers > 1:  # each worker imports the app itself: uvicorn needs a string
        os.environ[SERVE_SETTINGS_ENV] = resolved.to_json()
        os.environ[PROTECT_APP_ENV] = target.to_json()
        uvicorn.run("doorman.server.protect:from_environment", **options)
        return
    with one_line_errors():  # a factory, so that the app is built inside uvicorn's event loop
        uvicorn.run(lambda: settled(create_app(resolved, protected=app)), **options)
