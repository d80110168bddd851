"""The ``aftershock`` entry point: quick answers first, then the command line proper.

``--help``/``-h``, ``--version`` and ``version`` alone are answered from
:mod:`aftershock.cli.commands` without importing typer (the answers are the same text the full
command line gives); any other arguments go to :data:`aftershock.cli.main.app`.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args in (["--version"], ["version"]):
        from spine import __version__

        sys.stdout.write(__version__ + "\n")
        return
    if args in (["--help"], ["-h"]):
        from aftershock.cli.commands import help_width, root_help

        sys.stdout.write(root_help(help_width()))
        return
    from aftershock.cli.main import app

    app()


if __name__ == "__main__":
    main()
