"""Runtime configuration, read from ``MEMCOMPRESS_*`` environment variables (and an optional ``.env``).

The settings come in groups, one class each (:data:`GROUPS`: store, fold, LLM, limits, queue and worker,
observability); :class:`Settings` is all of them, read from flat ``MEMCOMPRESS_<NAME>`` variables. The
variable names are a public contract (see the README's settings tables). Anything invalid fails at
start-up with one line naming the variable, via :func:`load_settings` and :class:`ConfigError`.
Secrets never appear in ``repr``: the API key is a ``SecretStr``, the URLs are left out of it, and
:meth:`Settings.describe` (what is logged) shows every URL redacted.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from memcompress.cron import CronError, CronSchedule
from memcompress.keys import DEFAULT_QUEUE_NAME, DEFAULT_REQUESTS_KEY, QUEUE_SEPARATOR
from memcompress.layouts import LayoutName, StoreLayout, refused_settings
from memcompress.models import DEFAULT_PROFILE, ProfileDefaults, valid_language_tag
from memcompress.probe import DEFAULT_METRICS_PORT
from memcompress.redaction import MASK, redact_url

ENV_PREFIX = "MEMCOMPRESS_"
MONGODB_SCHEMES = ("mongodb", "mongodb+srv")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Settings that are URLs: shown only through redact_url (they may carry credentials).
FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"  # a plain field or collection name: no "$", no "."
URL_SETTINGS = ("mongodb_uri", "redis_url", "llm_base_url", "pushgateway_url")
BATCH_SIZE = 500  # MEMCOMPRESS_BATCH_SIZE's default, and the repositories' when a caller names none


class ConfigError(Exception):
    """Bad configuration; ``str()`` is a single line fit for stderr."""


def _check_uri(value: str, schemes: tuple[str, ...], what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"{what} must start with {' or '.join(s + '://' for s in schemes)}")
    if parts.scheme != "unix" and not parts.netloc.rpartition("@")[2]:
        raise ValueError(f"{what} has no host")
    return value


def _parse_scan_cron(value: object) -> CronSchedule:
    if isinstance(value, CronSchedule):
        return value
    try:
        return CronSchedule.parse(str(value))
    except CronError as error:
        raise ValueError(f"MEMCOMPRESS_SCAN_CRON: {error}") from None


# Parsed once, here; shown and serialised as the expression it was given as.
ScanCron = Annotated[
    CronSchedule,
    NoDecode,  # a cron expression, not JSON
    PlainValidator(_parse_scan_cron),
    PlainSerializer(lambda schedule: schedule.expression),
]


def _unset_when_blank(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


UnsetWhenBlank = BeforeValidator(_unset_when_blank)  # MEMCOMPRESS_LLM_RPM= (empty) leaves the setting unset


# The groups. Each declares its settings once, with its default and description; :class:`Settings` is
# all of them, with the flat ``MEMCOMPRESS_<NAME>`` variables. A function that needs one group may take
# that class (a ``Settings`` is one). The README has one settings table per group, in GROUPS' order
# (tests/unit/test_settings.py checks every row's name, default and group against these classes).


class StoreSettings(BaseModel):
    """Where the history is (MongoDB, its collections and field names) and the queue's Redis."""

    mongodb_uri: str = Field(
        "mongodb://localhost:27017", repr=False, description="MongoDB connection string (mongodb:// or +srv)"
    )
    mongodb_db: str = Field(
        "butler",
        min_length=1,
        max_length=63,
        pattern=r"^[^/\\. \"$]+$",
        description="the database holding the app's collections and ours",
    )
    mongodb_server_selection_timeout_ms: int = Field(
        5000, gt=0, description="how long to wait for a reachable MongoDB server, at start-up too"
    )
    mongodb_max_pool_size: int = Field(20, gt=0, description="MongoDB connections per process, at most")
    redis_url: str = Field(
        "redis://localhost:6379/0", repr=False, description="Redis for the queue, the requests and the locks"
    )
    layout: LayoutName = Field("user_memory", description="user_memory, messages or conversations")
    memory_collection: str | None = Field(
        None, pattern=FIELD_NAME, description="the history's collection (default: the layout's)"
    )
    owner_field: str | None = Field(
        None, pattern=FIELD_NAME, description="the field naming a message's user (default: the layout's)"
    )
    order_field: str | None = Field(
        None, pattern=FIELD_NAME, description="the field ordering the history (default: the layout's)"
    )
    memory_ttl_days: int | None = Field(
        None, ge=1, description="opt-in TTL index on user_memory; deletes unsummarised memory"
    )

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_uri(cls, value: str) -> str:
        return _check_uri(value, MONGODB_SCHEMES, "MEMCOMPRESS_MONGODB_URI")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _check_uri(value, REDIS_SCHEMES, "MEMCOMPRESS_REDIS_URL")


class FoldSettings(BaseModel):
    """How one user is compressed: when, what stays verbatim, how the history is read and summarised,
    what happens to the folded events, and new profiles' defaults."""

    threshold: int = Field(50, ge=1, description="compress users with more than this many events")
    keep_last: int = Field(20, ge=0, description="newest events left verbatim after a compression")
    trigger_tokens: int | None = Field(
        None, ge=1, description="also compress when the foldable history is above this many tokens"
    )
    target_tokens: int | None = Field(
        None, ge=0, description="fold until the kept history is at most this many tokens"
    )
    min_fold: int = Field(10, ge=1, description="no compression folds fewer events than this")
    pinned_tag: str = Field("pinned", min_length=1, description="events tagged so stay verbatim")
    pinned_roles: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="roles whose events stay verbatim (comma-separated)"
    )
    batch_size: int = Field(BATCH_SIZE, ge=1, le=10_000, description="events read per round trip")
    chunk_chars: int = Field(24_000, ge=1_000, description="transcript characters per LLM request")
    summary_max_chars: int = Field(
        4_000, ge=200, description="length budget of a summary; longer answers are rejected"
    )
    retention: Literal["delete", "archive"] = Field(
        "archive",
        description="archive (the default, every summariser): folded events move to <collection>_archive; "
        "delete: they are removed, an explicit choice",
    )
    accept_lossy_retention: bool = Field(
        False, description="allow RETENTION=delete with the extractive summariser (folded text is lost)"
    )
    default_language: str = Field(
        DEFAULT_PROFILE.language, min_length=1, description="a new profile's language (a language tag)"
    )
    default_persona: str = Field(DEFAULT_PROFILE.persona, min_length=1, description="a new profile's persona")
    default_tone: str = Field(DEFAULT_PROFILE.tone, min_length=1, description="a new profile's tone")

    @field_validator("pinned_roles", mode="before")
    @classmethod
    def _pinned_roles(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(role.strip() for role in value.split(",") if role.strip())
        return value

    @field_validator("default_language")
    @classmethod
    def _default_language(cls, value: str) -> str:
        if valid_language_tag(value) is None:
            raise ValueError(
                f"MEMCOMPRESS_DEFAULT_LANGUAGE must be a language tag like ru, en or pt-BR, got {value!r}"
            )
        return value


class LLMSettings(BaseModel):
    """Which summariser, and the OpenAI-compatible endpoint it calls."""

    summarizer: Literal["openai", "extractive"] | None = Field(
        None,
        description="default: openai when MEMCOMPRESS_LLM_BASE_URL (or OPENAI_BASE_URL) names an endpoint, "
        "else extractive; an API key alone selects nothing",
    )
    llm_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("MEMCOMPRESS_LLM_BASE_URL", "OPENAI_BASE_URL"),
        repr=False,
        description="the OpenAI-compatible endpoint (unset: OpenAI's, when SUMMARIZER=openai)",
    )
    llm_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("MEMCOMPRESS_LLM_API_KEY", "OPENAI_API_KEY"),
        description="the endpoint's API key (never shown)",
    )
    llm_model: str = Field("gpt-4o-mini", min_length=1, description="the model asked for")
    llm_timeout_s: float = Field(
        120.0,
        gt=0,
        description="one LLM request; a CPU-served model reads a full chunk in tens of seconds",
    )
    llm_max_retries: int = Field(
        0,
        ge=0,
        le=10,
        description="the openai client's own retries (each counted as a request); 0: the job's retry "
        "policy is the only one",
    )
    llm_price_prompt_per_1m: Annotated[float | None, UnsetWhenBlank] = Field(
        None, ge=0, description="USD per million prompt tokens: dry runs show a cost estimate when set"
    )
    llm_price_completion_per_1m: Annotated[float | None, UnsetWhenBlank] = Field(
        None, ge=0, description="USD per million completion tokens: dry runs show a cost estimate when set"
    )

    @field_validator("llm_base_url")
    @classmethod
    def _llm_base_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        return _check_uri(value, ("http", "https"), "MEMCOMPRESS_LLM_BASE_URL")


class LimitSettings(BaseModel):
    """What one user's compressions, and all workers together, may spend."""

    max_compactions_per_day: int = Field(48, ge=1, description="per user, in any 24 hours")
    max_llm_calls_per_user_day: int = Field(
        100,
        ge=1,
        description="LLM requests per user in any 24 hours (retries and repairs included); past it the "
        "user is parked until its requests age out",
    )
    # The LLM budget, shared by every worker process through Redis (unset: no limit).
    llm_rpm: Annotated[int | None, UnsetWhenBlank] = Field(
        None, gt=0, description="LLM requests per minute, all workers together"
    )
    llm_tpm: Annotated[int | None, UnsetWhenBlank] = Field(
        None, gt=0, description="LLM tokens per minute (prompt + completion), all workers together"
    )
    llm_rate_window_s: int = Field(
        60,
        ge=1,
        le=60,
        description="the budget holds in every window this long (RPM x window / 60 requests per "
        "window); shorter windows spread requests more evenly",
    )


class QueueSettings(BaseModel):
    """The queue, the scan and the worker processes: what runs when, how many at once, for how long."""

    queue_name: str = Field(
        DEFAULT_QUEUE_NAME, min_length=1, description="the arq queue; job ids and locks are per queue"
    )
    requests_key: str = Field(
        DEFAULT_REQUESTS_KEY, min_length=1, description="the sorted set apps add compression requests to"
    )
    scan_cron: ScanCron = Field(
        "*/10 * * * *", validate_default=True, description="when the worker scans for users over threshold"
    )
    scan_limit: int | None = Field(None, ge=1, description="at most this many users per scan")
    full_scan_interval_h: float = Field(
        24.0,
        ge=0,
        description="a scan reads every user's events this often (0: always); else only active users",
    )
    scan_overlap_s: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="an incremental scan also reads events this much older than the last scan",
    )
    max_jobs: int = Field(16, ge=1, le=1000, description="concurrent jobs per worker process")
    adaptive_jobs: bool = Field(
        True,
        description="each worker process runs between 1 and MAX_JOBS jobs at once: fewer while the store "
        "is saturated (never idle between its commands, which queue), MAX_JOBS while it is not; "
        "false: always MAX_JOBS",
    )
    job_timeout_s: float = Field(300.0, gt=0, description="one compression job, all LLM calls included")
    max_tries: int = Field(5, ge=1, le=100, description="tries per job before it is dead-lettered")
    lock_ttl_s: float = Field(
        30.0,
        gt=0,
        description="per-user lock; renewed every third of it while held, so it may be shorter "
        "than a job: it is how long a crashed holder keeps the user from being compressed",
    )
    job_completion_wait_s: int = Field(60, ge=0, description="on SIGTERM, time running jobs get to finish")
    poll_delay_s: float = Field(
        0.1, gt=0, le=10, description="how often a worker looks for due jobs (arq starts jobs only then)"
    )
    health_check_interval_s: int = Field(
        30, ge=1, description="how often a worker writes its health-check key"
    )

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if QUEUE_SEPARATOR in value:  # it parts the queue from the user in job ids and lock keys
            raise ValueError(f"MEMCOMPRESS_QUEUE_NAME must not contain {QUEUE_SEPARATOR!r}")
        return value


class ObservabilitySettings(BaseModel):
    """Where the worker's metrics and probes are served, and where run-once pushes its metrics."""

    metrics_port: int = Field(
        DEFAULT_METRICS_PORT,
        ge=0,
        le=65535,
        description="the worker's HTTP endpoint: /metrics, /healthz (liveness), /readyz (readiness); 0: none",
    )
    pushgateway_url: str | None = Field(
        None, repr=False, description="run-once pushes its metrics here when set"
    )

    @field_validator("pushgateway_url")
    @classmethod
    def _pushgateway_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        return _check_uri(value, ("http", "https"), "MEMCOMPRESS_PUSHGATEWAY_URL")


GROUPS: tuple[type[BaseModel], ...] = (
    StoreSettings,
    FoldSettings,
    LLMSettings,
    LimitSettings,
    QueueSettings,
    ObservabilitySettings,
)


# pydantic takes the fields of the last base first: the groups are listed in reverse, so that the
# settings come in GROUPS' order (in `memcompress config` as in the README).
class Settings(
    BaseSettings,
    ObservabilitySettings,
    QueueSettings,
    LimitSettings,
    LLMSettings,
    FoldSettings,
    StoreSettings,
):
    """Every setting, each group's in turn, with the ``MEMCOMPRESS_*`` variables; the checks that span
    groups are here."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.keep_last >= self.threshold:
            raise ValueError(
                f"MEMCOMPRESS_KEEP_LAST ({self.keep_last}) must be less than "
                f"MEMCOMPRESS_THRESHOLD ({self.threshold})"
            )
        for refusal in refused_settings(self.layout):
            if getattr(self, refusal.setting) not in (None, ()):
                raise ValueError(refusal.reason)
        if self.trigger_tokens is not None and self.target_tokens is None:
            raise ValueError(
                "MEMCOMPRESS_TRIGGER_TOKENS needs MEMCOMPRESS_TARGET_TOKENS (what to fold down to)"
            )
        if (
            self.trigger_tokens is not None
            and self.target_tokens is not None
            and not self.target_tokens < self.trigger_tokens
        ):
            raise ValueError(
                f"MEMCOMPRESS_TARGET_TOKENS ({self.target_tokens}) must be less than "
                f"MEMCOMPRESS_TRIGGER_TOKENS ({self.trigger_tokens})"
            )
        if self.summarizer is None:
            # An endpoint named for us selects the LLM; an API key alone (OPENAI_API_KEY in the
            # environment or a .env, set for some other program) never does: that would send every
            # user's history to the public endpoint unasked.
            self.summarizer = "openai" if self.llm_base_url is not None else "extractive"
        # Deleting folded events is an explicit choice (MEMCOMPRESS_RETENTION=delete), never a default.
        if self.summarizer == "extractive" and self.retention == "delete" and not self.accept_lossy_retention:
            raise ValueError(
                "MEMCOMPRESS_RETENTION=delete with the extractive summariser forgets most folded text "
                "(it only selects sentences): use archive, configure an LLM, or set "
                "MEMCOMPRESS_ACCEPT_LOSSY_RETENTION=true to accept that loss"
            )
        for name, per_minute in (
            ("MEMCOMPRESS_LLM_RPM", self.llm_rpm),
            ("MEMCOMPRESS_LLM_TPM", self.llm_tpm),
        ):
            if per_minute is not None and per_minute * self.llm_rate_window_s < 60:
                raise ValueError(
                    f"{name} ({per_minute}) allows less than one per "
                    f"MEMCOMPRESS_LLM_RATE_WINDOW_S ({self.llm_rate_window_s} s): raise it or the window"
                )
        # Timeouts are layered: one LLM request < one job. The user's lock outlasts the job by being
        # renewed every third of its TTL while held; the TTL itself only says how soon a crashed
        # holder's lock expires, so it is independent of the job timeout.
        if not self.llm_timeout_s < self.job_timeout_s:
            raise ValueError(
                f"timeouts must be layered: MEMCOMPRESS_LLM_TIMEOUT_S ({self.llm_timeout_s:g}) < "
                f"MEMCOMPRESS_JOB_TIMEOUT_S ({self.job_timeout_s:g})"
            )
        return self

    @property
    def summarizer_name(self) -> Literal["openai", "extractive"]:
        assert self.summarizer is not None  # resolved by the validator
        return self.summarizer

    @property
    def unused_api_key(self) -> bool:
        """An LLM API key is set but no endpoint selects the LLM: the offline summariser is used."""
        return self.summarizer == "extractive" and self.llm_api_key is not None

    def store_layout(self) -> StoreLayout:
        return StoreLayout.default(
            self.layout, collection=self.memory_collection, owner=self.owner_field, order=self.order_field
        )

    def profile_defaults(self) -> ProfileDefaults:
        return ProfileDefaults(
            language=self.default_language, persona=self.default_persona, tone=self.default_tone
        )

    def describe(self) -> dict[str, object]:
        """Every setting, safe to log or print: every URL redacted (userinfo and secret-bearing query
        parameters, see :func:`memcompress.redaction.redact_url`), the API key masked."""
        shown = self.model_dump()
        for name in URL_SETTINGS:
            if shown[name] is not None:
                shown[name] = redact_url(shown[name])
        shown["llm_api_key"] = MASK if self.llm_api_key else None
        return shown


def _error_line(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else ""
        if name and not name.startswith(ENV_PREFIX):
            name = ENV_PREFIX + name
        message = item["msg"].removeprefix("Value error, ")
        problems.append(message if not name or message.startswith(ENV_PREFIX) else f"{name}: {message}")
    return "invalid configuration: " + "; ".join(problems)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one :class:`ConfigError` line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_error_line(error)) from None


def _variables(name: str) -> list[str]:
    """The environment variables that set the field ``name`` (its ``MEMCOMPRESS_`` name, or its aliases)."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice).upper() for choice in alias.choices]
    return [ENV_PREFIX + name.upper()]


def _dotenv_names(env_file: str) -> set[str]:
    if not Path(env_file).is_file():
        return set()
    return {k.upper() for k, v in dotenv_values(env_file).items() if v is not None}


def setting_sources(env_file: str = ".env", flags: Iterable[str] = ()) -> dict[str, str]:
    """Where each setting's value comes from: ``flag`` (a command-line option, the names in ``flags``),
    ``env`` (the process environment), ``.env`` (the file in the working directory) or ``default`` —
    what ``memcompress config`` shows beside each value, so that a ``.env`` holding, say,
    ``OPENAI_API_KEY`` cannot switch the summariser unnoticed."""
    from_file = _dotenv_names(env_file)
    from_env = {k.upper() for k in os.environ}
    sources = {}
    for name in Settings.model_fields:
        names = set(_variables(name))
        sources[name] = (
            "flag"
            if name in flags
            else "env"
            if from_env & names
            else ".env"
            if from_file & names
            else "default"
        )
    return sources


# The test suite's and the benchmarks' own variables (MEMCOMPRESS_TEST_MONGODB_URI, ...): not settings.
TOOL_PREFIXES = ("MEMCOMPRESS_TEST_", "MEMCOMPRESS_BENCH_", "MEMCOMPRESS_FAULT_")


def unknown_variables(
    also_known: Iterable[str] = (), env_file: str = ".env", environ: Mapping[str, str] | None = None
) -> list[str]:
    """One line for each ``MEMCOMPRESS_*`` variable of the environment or the ``.env`` that no setting
    (nor a name in ``also_known``, such as the CLI's own MEMCOMPRESS_LOG_FORMAT) reads, naming the
    closest known name: a misspelt variable is otherwise ignored without a word (pydantic-settings
    drops unknown names). Each name once, even when both the environment and the ``.env`` set it."""
    known = {variable for name in Settings.model_fields for variable in _variables(name)} | set(also_known)
    given = {k.upper(): "the environment" for k in (os.environ if environ is None else environ)}
    given |= {k: ".env" for k in _dotenv_names(env_file) if k not in given}
    lines = []
    for variable, where in sorted(given.items()):
        if not variable.startswith(ENV_PREFIX) or variable in known or variable.startswith(TOOL_PREFIXES):
            continue
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        hint = f": did you mean {close[0]}?" if close else " (see the README's settings table)"
        lines.append(f"{variable} (in {where}) is not a setting and is ignored{hint}")
    return lines
