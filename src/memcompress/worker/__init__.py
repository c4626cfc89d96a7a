"""The long-running arq worker: ``memcompress worker`` (:mod:`memcompress.worker.runner`), or
``arq memcompress.worker.WorkerSettings``.

``WorkerSettings`` is built from the ``MEMCOMPRESS_*`` settings when first looked up, so importing this
package reads no configuration.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        from memcompress.settings import load_settings
        from memcompress.worker.arq_settings import worker_settings

        return worker_settings(load_settings())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
