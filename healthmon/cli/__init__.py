"""Command line: the same services the dashboard calls, headless.

One module per command group (:mod:`.models`, :mod:`.patients`, :mod:`.admin`); each adds
its parsers and maps its command names to handlers. Exit codes: 0 success, 2 bad input or
settings (one line on stderr saying what to fix), 1 an unexpected error (traceback kept, it
is a bug).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pydantic import ValidationError

from healthmon.cli import admin, models, patients, server
from healthmon.config import Settings
from healthmon.errors import HealthmonError

EXIT_BAD_INPUT = 2
GROUPS = (models, admin, patients, server)
COMMANDS = {name: handler for group in GROUPS for name, handler in group.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m healthmon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        return COMMANDS[args.command](args, settings)
    except HealthmonError as exc:
        print(f"healthmon {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as exc:  # a HEALTHMON_* environment variable with a bad value
        problems = "; ".join(
            f"HEALTHMON_{'_'.join(map(str, err['loc'])).upper()}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        print(f"healthmon {args.command}: invalid setting: {problems}. Fix the environment variable.", file=sys.stderr)
        return EXIT_BAD_INPUT
