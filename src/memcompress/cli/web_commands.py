"""``web``: the read-only pages of :mod:`memcompress.web.app`, served by uvicorn (imported only here,
so no other command loads a web server)."""

from __future__ import annotations

import click

from memcompress.cli.context import EXIT_CONFIG, CliState, fail
from memcompress.settings import ConfigError

MIN_TOKEN_CHARS = 16


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Offer retry and delete of dead letters, pause and resume; each POST must name the token.",
)
@click.option(
    "--token",
    envvar="MEMCOMPRESS_WEB_TOKEN",
    help=f"The actions' token, at least {MIN_TOKEN_CHARS} characters (or MEMCOMPRESS_WEB_TOKEN).",
)
@click.pass_obj
def web(state: CliState, host: str, port: int, allow_actions: bool, token: str | None) -> None:
    """Serve read-only pages: overview, dead letters, one page per user (no message content, no
    summary text). Binds 127.0.0.1 unless told otherwise."""
    try:
        import uvicorn

        from memcompress.web.app import create_app
    except ImportError as error:
        fail(f"memcompress web needs the web extra (pip install 'memcompress[web]'): {error}", EXIT_CONFIG)
    if allow_actions and (token is None or len(token) < MIN_TOKEN_CHARS):
        fail(
            f"--allow-actions needs a token of at least {MIN_TOKEN_CHARS} characters (MEMCOMPRESS_WEB_TOKEN or --token)",
            EXIT_CONFIG,
        )
    try:
        settings = state.settings()
    except ConfigError as error:
        fail(str(error), EXIT_CONFIG)
    app = create_app(settings, token=token if allow_actions else None)
    click.echo(
        f"memcompress web on http://{host}:{port}/{' (actions allowed)' if allow_actions else ''}", err=True
    )
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


COMMANDS = [web]
