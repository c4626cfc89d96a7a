"""``config`` (the effective settings, and one user's) and ``override`` (per-user settings)."""

from __future__ import annotations

import click

from memcompress.bootstrap import open_services
from memcompress.cli.context import CLI_REDIS_RETRIES, EXIT_CONFIG, CliState, echo_report, fail, run
from memcompress.jobs import Services
from memcompress.models import UserOverrides, valid_language_tag
from memcompress.settings import setting_sources


async def _user_config(services: Services, user_id: str) -> dict[str, object]:
    overrides = await services.overrides.get(user_id)
    limits = services.policy.limits(overrides)
    profile = await services.profiles.find(user_id)
    return {
        "user_id": user_id,
        "overrides": overrides.model_dump(exclude_none=True) if overrides else {},
        "threshold": limits.threshold,
        "keep_last": limits.keep_last,
        "trigger_tokens": limits.trigger_tokens,
        "target_tokens": limits.target_tokens,
        "min_fold": limits.smallest_fold,
        "max_llm_calls_per_day": services.policy.calls_per_day(overrides),
        "model": (overrides.model if overrides else None) or services.summarizer.model,
        "language": (overrides.language if overrides else None)
        or (profile.language if profile else None)
        or services.policy.default_language,
    }


@click.command()
@click.option("--user", "user_id", help="Show what applies to this user (settings with its overrides).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def config(state: CliState, user_id: str | None, as_json: bool) -> None:
    """The effective settings, each with its source (env, .env or default), secrets redacted; with
    --user, the limits, model and language that user's compressions use: the settings with the user's
    overrides applied."""

    async def work() -> int:
        settings = state.settings()
        if user_id is None:
            sources = setting_sources(flags=state.overrides)
            if sources["summarizer"] == "default":  # derived: say from what
                endpoint = sources["llm_base_url"]
                sources["summarizer"] = (
                    f"default: an LLM endpoint is set (llm_base_url, {endpoint})"
                    if settings.summarizer == "openai"
                    else "default: no LLM endpoint is set (MEMCOMPRESS_LLM_BASE_URL)"
                )
            if settings.unused_api_key:
                click.echo(
                    "note: an LLM API key is set but no LLM endpoint: the offline extractive summariser is "
                    "used (set MEMCOMPRESS_LLM_BASE_URL, or MEMCOMPRESS_SUMMARIZER=openai for OpenAI's "
                    "public endpoint)",
                    err=True,
                )
            shown = {
                name: {"value": value, "source": sources[name]} for name, value in settings.describe().items()
            }
            if as_json:
                echo_report(shown, as_json)
            else:
                for name, item in shown.items():
                    click.echo(f"{name} = {item['value']}  ({item['source']})")
            return 0
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            echo_report(await _user_config(services, user_id), as_json)
        return 0

    run(state, work())


@click.command()
@click.argument("user_id")
@click.option("--threshold", type=click.IntRange(min=1), help="Compress with more than this many events.")
@click.option("--keep-last", type=click.IntRange(min=0), help="Newest events left verbatim.")
@click.option("--trigger-tokens", type=click.IntRange(min=1), help="Also compress above this many tokens.")
@click.option(
    "--target-tokens", type=click.IntRange(min=0), help="Fold until the kept history is this small."
)
@click.option("--model", help="LLM model for this user.")
@click.option("--language", help="Summary language for this user (a language tag, e.g. en, ru, pt-BR).")
@click.option(
    "--max-llm-calls",
    type=click.IntRange(min=1),
    help="LLM requests this user's runs may make in any 24 hours (a parked user resumes under a higher one).",
)
@click.option("--clear", is_flag=True, help="Remove every override of the user.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def override(
    state: CliState,
    user_id: str,
    threshold: int | None,
    keep_last: int | None,
    trigger_tokens: int | None,
    target_tokens: int | None,
    model: str | None,
    language: str | None,
    max_llm_calls: int | None,
    clear: bool,
    as_json: bool,
) -> None:
    """Set per-user settings (the options given are merged into the user's overrides), or --clear them;
    prints what then applies to the user, as `config --user` does."""
    given = {
        "threshold": threshold,
        "keep_last": keep_last,
        "trigger_tokens": trigger_tokens,
        "target_tokens": target_tokens,
        "model": model,
        "language": language,
        "max_llm_calls_per_day": max_llm_calls,
    }

    if language is not None and valid_language_tag(language) is None:
        raise click.BadParameter(
            f"{language!r} is not a language tag like en, ru or pt-BR", param_hint="--language"
        )

    async def work() -> int:
        settings = state.settings()
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            if clear:
                await services.overrides.clear(user_id)
            else:
                current = await services.overrides.get(user_id) or UserOverrides()
                merged = current.model_copy(update={k: v for k, v in given.items() if v is not None})
                limits = services.policy.limits(merged)
                if limits.keep_last >= limits.threshold:
                    fail(
                        f"keep-last ({limits.keep_last}) must be less than threshold ({limits.threshold})",
                        EXIT_CONFIG,
                    )
                if limits.trigger_tokens is not None and (limits.target_tokens or 0) >= limits.trigger_tokens:
                    fail("target-tokens must be set and less than trigger-tokens", EXIT_CONFIG)
                await services.overrides.set(user_id, merged)
            echo_report(await _user_config(services, user_id), as_json)
        return 0

    run(state, work())


COMMANDS = [config, override]
