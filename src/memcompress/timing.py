"""Every fixed period, interval, margin and timeout of the worker, in one place.

The durations an operator chooses are settings (``MEMCOMPRESS_*_S``, :mod:`memcompress.settings`); these
are the ones the code fixes, each with what depends on it. The modules named import them from here.
Standard library only, nothing imported: the app-side helper (:mod:`memcompress.queue`) and the
container probe (:mod:`memcompress.probe`) read it too.
"""

from __future__ import annotations

# --- the app's requests and the queue ---------------------------------------------------------------
# request_compression: a request is due this long after the app's call, so a burst of messages asks once.
DEFAULT_DELAY_S = 30.0
# jobs.drainer: each worker process hands due requests to the queue this often.
DRAIN_EVERY_S = 0.5
# repositories.job_queue: a due request whose user has a job queued or running is looked at again this
# much later; it is served within about this long after the job ends, and costs one ZADD a second.
LOOK_AGAIN_S = 1.0
# worker.runner: the longest wait between a worker's polls when no job is due (MEMCOMPRESS_POLL_DELAY_S
# while due jobs are found, doubling up to this).
IDLE_POLL_S = 0.5

# --- retries --------------------------------------------------------------------------------------------
# repositories.database: connect pings this often while a restarting MongoDB drops the first connections
# (within MEMCOMPRESS_MONGODB_SERVER_SELECTION_TIMEOUT_MS).
CONNECT_RETRY_EVERY_S = 0.5
# worker.lifecycle: a worker starting while MongoDB is not up yet (a restart, a stack starting together)
# waits this long for it before it exits; the CLI waits only MEMCOMPRESS_MONGODB_SERVER_SELECTION_TIMEOUT_MS.
STORE_START_WAIT_S = 60.0
# jobs.queued: a failed try is retried after 2.5-5 s, doubling with each try, at most RETRY_MAX_S.
RETRY_BASE_S = 5.0
RETRY_MAX_S = 300.0
# jobs.queued: a try that found its user's lock held is retried once the lock can have expired, plus a
# random wait in this range (so the jobs of a crashed worker's users do not all come back at once).
BUSY_RETRY_JITTER_S = (1.0, 3.0)
# bootstrap: a worker rides out a Redis restart or failover of up to about a minute (30 retries, each
# backing off exponentially from 0.1 s to 2 s) instead of failing the job.
REDIS_RETRIES = 30
REDIS_BACKOFF_BASE_S = 0.1
REDIS_BACKOFF_CAP_S = 2.0

# --- locks, time limits and fences ----------------------------------------------------------------------
# repositories.locks: a held user lock is renewed every this share of MEMCOMPRESS_LOCK_TTL_S; one not
# renewed for LOCK_STALE_SHARE of it is shown as stale (`memcompress user`).
LOCK_RENEW_SHARE = 1 / 3
LOCK_STALE_SHARE = 1 / 2
# worker.arq_settings: arq's own time limit is MEMCOMPRESS_JOB_TIMEOUT_S plus this, only a backstop (the
# job's limit ends it first, with a retry and its finished chunks kept).
ARQ_TIMEOUT_MARGIN_S = 5.0
# jobs.forget: an erased user's tombstone outlasts every job that started before the erase by this.
ERASE_FENCE_MARGIN_S = 60.0

# --- the LLM budget (repositories.llm_budget) -----------------------------------------------------------
# Grants are counted over the window plus this: the most a request may take from its grant to its
# arrival at the provider.
BUDGET_TRANSIT_MARGIN_S = 1.0
# A wait for the budget is at most this long (settled grants may free tokens sooner), plus up to
# BUDGET_JITTER_S so that waiting workers do not all ask at the same instant.
BUDGET_LONGEST_SLEEP_S = 5.0
BUDGET_JITTER_S = 0.05

# --- health and metrics -----------------------------------------------------------------------------------
# worker.http_endpoint: each check of /healthz and /readyz; a probe asks at most two (under 10 s with the
# thread hops, within the deploy files' probe timeouts).
PROBE_TIMEOUT_S = 3.0
# probe: `python -m memcompress.probe` waits this long for the endpoint's answer.
PROBE_CLIENT_TIMEOUT_S = 10.0
# worker.lifecycle: the queue-depth and dead-letter gauges are sampled this often.
GAUGES_EVERY_S = 5.0
