"""Reference pages generated from the code: docs/settings.md and docs/cli.md.

``python -m healthmon.reference`` (``make docs``) writes both; tests/test_docs.py fails when
a page differs from what the code would generate, so the pages cannot drift from the code.
The generators take the settings class and the parser as parameters, so they work on any
(and a test feeds them small hand-made ones); only :func:`main` imports the real CLI.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import annotated_types
from pydantic_settings import BaseSettings

from healthmon.config import Settings

SETTINGS_PAGE = "settings.md"
CLI_PAGE = "cli.md"
# Wide enough that argparse never wraps a usage line, so the page does not depend on the
# terminal that generated it.
_NO_WRAP = 10_000

_TYPE_NAMES = {Path: "path", str: "text", int: "integer", float: "number", bool: "true or false"}


def settings_reference(settings_cls: type[BaseSettings] = Settings) -> str:
    """The settings page: one ``## <PREFIX><NAME>`` section per field.

    Args:
        settings_cls: a pydantic-settings class; its ``env_prefix`` names the variables.

    Returns:
        Markdown: each field's description, type (with its bounds) and default.
    """
    prefix = str(settings_cls.model_config.get("env_prefix", "")).upper()
    lines = [
        "# Settings",
        "",
        "<!-- Generated from healthmon/config.py by `make docs`; edit the descriptions there. -->",
        "",
        (
            f"Every setting is read from an environment variable (`{prefix}<NAME>`, any case). Paths may be "
            "relative: they resolve against the folder the dashboard or CLI is started in. Tests and "
            "scripts can pass settings as keywords instead: `Settings(data_dir=tmp_path)`."
        ),
        "",
    ]
    for name, field in settings_cls.model_fields.items():
        lines += [
            f"## {prefix}{name.upper()}",
            "",
            (field.description or "").strip(),
            "",
            f"- Type: {_type_text(field.annotation, field.metadata)}",
            f"- Default: {_default_text(field.default)}",
            "",
        ]
    return "\n".join(lines)


def _type_text(annotation: Any, metadata: Sequence[Any]) -> str:
    args = typing.get_args(annotation)
    optional = type(None) in args and typing.get_origin(annotation) in (typing.Union, types.UnionType)
    if optional:
        (annotation,) = [a for a in args if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        text = "one of " + ", ".join(f"`{choice}`" for choice in typing.get_args(annotation))
    else:
        text = _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = _bounds_text(metadata)
    if bounds:
        text += f", {bounds}"
    return text + (" (may be left unset)" if optional else "")


def _bounds_text(metadata: Sequence[Any]) -> str:
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"at least {item.ge}"
        elif isinstance(item, annotated_types.Gt):
            low = f"more than {item.gt}"
        elif isinstance(item, annotated_types.Le):
            high = f"at most {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f"less than {item.lt}"
    return " and ".join(part for part in (low, high) if part)


def _default_text(default: Any) -> str:
    if default is None:
        return "not set"
    return f"`{default}`"


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """The command-line page: one ``## <command>`` section per command, subcommands included.

    Args:
        parser: the top-level parser; its subparsers are walked recursively.

    Returns:
        Markdown: each command's help, usage line, arguments and options.
    """
    lines = [
        "# Command line",
        "",
        "<!-- Generated from the CLI's argparse parsers by `make docs`; edit the help texts there. -->",
        "",
    ]
    for command, help_text in _commands(parser, None):
        lines += [f"## {command.prog}", ""]
        if help_text:
            lines += [help_text, ""]
        if command.description and command.description != help_text:
            lines += [command.description, ""]
        lines += ["```", _usage(command), "```", ""]
        lines += _arguments(command)
    return "\n".join(lines)


def _commands(
    parser: argparse.ArgumentParser, help_text: str | None
) -> Iterator[tuple[argparse.ArgumentParser, str | None]]:
    """The parser and every parser below it, depth first, each with the help its parent gives it."""
    yield parser, help_text
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield from _commands(child, helps.get(name))


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return parser.formatter_class(prog=parser.prog, width=_NO_WRAP)


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = _formatter(parser)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    formatter = _formatter(parser)
    positionals, options, commands = [], [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                commands.append(f"- `{parser.prog} {choice.dest}`" + (f": {choice.help}" if choice.help else ""))
            continue
        # argparse's own rendering of "--mode {full,lora,head}" and of %(default)s in help.
        entry = f"- `{formatter._format_action_invocation(action)}`"
        if action.required and action.option_strings:
            entry += " (required)"
        if action.help:
            entry += f": {formatter._expand_help(action)}"
        if _shows_default(action):
            entry += f" (default: `{action.default}`)"
        (options if action.option_strings else positionals).append(entry)
    lines: list[str] = []
    for title, entries in (("Commands", commands), ("Arguments", positionals), ("Options", options)):
        if entries:
            lines += [f"{title}:", "", *entries, ""]
    return lines


def _shows_default(action: argparse.Action) -> bool:
    # Flags (store_true and kin) and empty repeatables have an obvious default not worth a line.
    if action.nargs == 0 or action.default in (None, "", [], argparse.SUPPRESS):
        return False
    return "%(default)" not in (action.help or "")


def write_reference(folder: Path) -> list[Path]:
    """Write docs/settings.md and docs/cli.md under ``folder``; returns the paths written."""
    from healthmon.cli import build_parser

    folder.mkdir(parents=True, exist_ok=True)
    pages = {SETTINGS_PAGE: settings_reference(), CLI_PAGE: cli_reference(build_parser())}
    written = []
    for name, text in pages.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m healthmon.reference [FOLDER]``: regenerate the reference pages (default ``docs``)."""
    parser = argparse.ArgumentParser(prog="python -m healthmon.reference", description=main.__doc__)
    parser.add_argument("folder", nargs="?", default="docs", help="where to write settings.md and cli.md")
    args = parser.parse_args(argv)
    for path in write_reference(Path(args.folder)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
