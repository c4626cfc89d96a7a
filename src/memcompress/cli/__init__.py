"""The ``memcompress`` command line (click). Commands and flags are a public contract; see --help."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from memcompress.cli.app import cli
    except ModuleNotFoundError as error:  # installed without the worker extra
        print(
            f"memcompress: the CLI needs the worker dependencies ({error.name} is missing): "
            "pip install 'memcompress[worker]'",
            file=sys.stderr,
        )
        sys.exit(2)
    cli()
