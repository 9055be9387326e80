"""The reference pages stay complete and match the code (datasette's test_docs.py habit)."""

from __future__ import annotations

import argparse
import re

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from healthmon.cli import build_parser
from healthmon.config import Settings
from healthmon.reference import cli_reference, settings_reference

from conftest import ROOT

DOCS = ROOT / "docs"


def _page(name: str) -> str:
    path = DOCS / name
    if not path.is_file():
        pytest.fail(f"docs/{name} is missing: run `make docs`")
    return path.read_text(encoding="utf-8")


def _headings(text: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^## (.+)$", text, re.MULTILINE)}


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand the parser accepts, as word tuples, walked independently
    of the generator so a generator that skips a level cannot hide it."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append((*prefix, name))
                found += _command_paths(child, (*prefix, name))
    return found


def test_every_setting_has_a_heading_and_a_description():
    page = _page("settings.md")
    headings = _headings(page)
    assert {"data_dir", "database_url", "device", "worker"} <= Settings.model_fields.keys()
    missing = [name for name in Settings.model_fields if f"HEALTHMON_{name.upper()}" not in headings]
    assert not missing, f"no `## HEALTHMON_<NAME>` heading in docs/settings.md for {missing}: run `make docs`"
    blank = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not blank, f"give these Settings fields a description= in healthmon/config.py: {blank}"
    stale = sorted(h for h in headings if h.removeprefix("HEALTHMON_").lower() not in Settings.model_fields)
    assert not stale, f"docs/settings.md documents settings that no longer exist: {stale}: run `make docs`"


def test_settings_page_matches_the_code():
    assert _page("settings.md") == settings_reference(), "docs/settings.md is out of date: run `make docs`"


def test_cli_page_matches_the_code():
    assert _page("cli.md") == cli_reference(build_parser()), "docs/cli.md is out of date: run `make docs`"


def test_every_cli_command_has_a_heading():
    parser = build_parser()
    commands = _command_paths(parser)
    # Known commands, so an empty or truncated walk cannot pass.
    assert {("train",), ("predict",), ("db", "upgrade"), ("users", "add")} <= set(commands)
    headings = _headings(_page("cli.md"))
    missing = [" ".join(c) for c in commands if " ".join((parser.prog, *c)) not in headings]
    assert not missing, f"no heading in docs/cli.md for these commands: {missing}: run `make docs`"


def test_settings_reference_renders_description_type_bounds_and_default():
    class Toy(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="TOY_")
        retries: int = Field(3, ge=1, le=9, description="How often to retry.")
        mode: str | None = Field(None, description="Optional mode.")

    page = settings_reference(Toy)
    assert "## TOY_RETRIES\n\nHow often to retry.\n\n- Type: integer, at least 1 and at most 9\n- Default: `3`\n" in page
    assert "## TOY_MODE\n\nOptional mode.\n\n- Type: text (may be left unset)\n- Default: not set\n" in page
    assert page.index("## TOY_RETRIES") < page.index("## TOY_MODE")


def test_cli_reference_walks_nested_subcommands_with_help_and_options():
    parser = argparse.ArgumentParser(prog="tool", description="A toy tool.")
    sub = parser.add_subparsers(dest="command", required=True)
    grp = sub.add_parser("grp", help="a group of commands")
    inner = grp.add_subparsers(dest="inner", required=True)
    leaf = inner.add_parser("leaf", help="the leaf command")
    leaf.add_argument("name", help="who to greet")
    leaf.add_argument("--times", type=int, default=2, help="how often")
    leaf.add_argument("--loud", action="store_true", help="shout")
    leaf.add_argument("--to", required=True, help="the recipient")

    page = cli_reference(parser)
    assert _headings(page) == {"tool", "tool grp", "tool grp leaf"}
    leaf_section = page.split("## tool grp leaf\n", 1)[1]
    assert leaf_section.startswith("\nthe leaf command\n")
    assert "tool grp leaf [-h] [--times TIMES] [--loud] --to TO name" in leaf_section
    assert "- `name`: who to greet" in leaf_section
    assert "- `--times TIMES`: how often (default: `2`)" in leaf_section
    assert "- `--loud`: shout\n" in leaf_section  # a flag's False default is not worth a line
    assert "- `--to TO` (required): the recipient" in leaf_section
    assert "- `tool grp leaf`: the leaf command" in page.split("## tool grp\n", 1)[1]
