"""Storage adapters behind the ports in :mod:`memcompress.repositories.protocols`: MongoDB
repositories, and the per-user locks, the job queue and the LLM budget on Redis. Only
:mod:`memcompress.bootstrap` builds these; everything above it sees the ports and
:mod:`memcompress.repositories.errors`.

This package re-exports nothing: importing a port or an error loads no driver. Import an adapter
from its own module (``memcompress.repositories.database``, ``...job_queue``); pymongo, redis and arq
load only with the adapter that needs them."""
