"""The genir command line: run | methods | transfer | evaluate | search | serve | index | docids | datasets."""

from __future__ import annotations

import sys

from genir.cli import run, use  # noqa: F401 - each module registers its commands on the app
from genir.cli.common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
