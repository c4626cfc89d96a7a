"""``replay`` (shadow mode): one user's history re-summarised with the current summariser, shown next to
the stored summary with the carry guard's verdict. Stores nothing."""

from __future__ import annotations

import click

from memcompress.bootstrap import open_services
from memcompress.cli.context import CLI_REDIS_RETRIES, EXIT_FAILED, CliState, echo_json, plural, run
from memcompress.jobs import ReplayResult, replay_user


@click.command()
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def replay(state: CliState, user_id: str, as_json: bool) -> None:
    """Re-summarise USER_ID's archived and current events with the current summariser and prompt,
    from no summary, in the fold's order and chunks; print the would-be summary next to the stored
    one with the carry guard's verdict (does the replay carry every value the stored summary holds?).

    Each answer is held to the fold's carry guard, as in a compression. Stores nothing and takes no
    lock. Only events kept with MEMCOMPRESS_RETENTION=archive (and the current ones) can be
    replayed. The two summaries are printed, never logged. Exit 0 when the replay ran to the end,
    whatever the verdict; 1 when a chunk's summary failed (the summariser, or the carry guard: the
    replayed summary shown is then that of the chunks before it); 2 on bad configuration or an
    unreachable store.
    """

    async def work() -> int:
        settings = state.settings()
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            result = await replay_user(services, user_id)
        if as_json:
            echo_json(result.as_dict())
        else:
            _show(result)
        if result.version_moved:
            click.echo(
                "memcompress: the stored summary changed during the replay (a compression ran): "
                "run it again for a comparison of one moment",
                err=True,
            )
        if result.failed:
            click.echo(f"memcompress: the replay failed at {result.failed}", err=True)
            return EXIT_FAILED
        return 0

    run(state, work())


def _show(result: ReplayResult) -> None:
    model = f" ({result.model})" if result.model else ""
    click.echo(f"user_id: {result.user_id}")
    click.echo(
        f"replayed: {result.archived_events} archived + {plural(result.current_events, 'current event')} "
        f"in {plural(result.chunks, 'chunk')}; summariser {result.summarizer}{model}, language {result.language}"
    )
    if result.folded_not_archived:
        click.echo(
            f"not replayable: {result.folded_not_archived} of the {result.events_summarized} events "
            "folded into the stored summary are not in the archive (deleted with RETENTION=delete, "
            "expired, or awaiting their trim)"
        )
    for title, text, extra in (
        ("stored summary", result.stored_summary, f"version {result.stored_version}, "),
        ("replayed summary", result.replayed_summary, ""),
    ):
        click.echo(f"--- {title} ({extra}{len(text or '')} chars) ---")
        click.echo(text if text else "(none)")
    click.echo("---")
    click.echo(f"carry verdict: {'ok' if result.verdict.ok else 'NOT ok'}: {result.verdict.reason}")


COMMANDS = [replay]
