"""``python -m memcompress.probe [/healthz|/readyz]``: a container health check that asks the running
worker's HTTP endpoint (:mod:`memcompress.worker.http_endpoint`) on ``MEMCOMPRESS_METRICS_PORT`` of this
host, instead of starting the CLI. Exit 0 when it answers 200, else 1, with its one-line answer on
stderr. Only the standard library: it starts in a few tens of milliseconds and loads no driver.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from memcompress.timing import PROBE_CLIENT_TIMEOUT_S

DEFAULT_METRICS_PORT = 9108  # the default of MEMCOMPRESS_METRICS_PORT (memcompress.settings)


def probe(path: str = "/healthz", port: int | None = None) -> tuple[bool, str]:
    """``(healthy, the endpoint's answer or why there was none)``."""
    port = port or int(os.environ.get("MEMCOMPRESS_METRICS_PORT") or DEFAULT_METRICS_PORT)
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=PROBE_CLIENT_TIMEOUT_S
        ) as response:
            return response.status == 200, response.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as error:
        return False, error.read().decode(errors="replace").strip()
    except OSError as error:  # URLError wraps the socket's error as its reason
        return False, f"no answer on port {port}: {type(getattr(error, 'reason', error)).__name__}"


def main(argv: list[str]) -> int:
    healthy, answer = probe(argv[0] if argv else "/healthz")
    if not healthy:
        print(f"memcompress: unhealthy: {answer}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
