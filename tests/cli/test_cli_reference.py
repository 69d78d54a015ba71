"""docs/cli.md is generated from the argument parsers and must be current."""

import os

from obiwan_h5.cli import COMMANDS
from obiwan_h5.cli.reference import cli_reference

CLI_MD = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "cli.md")


def test_cli_reference_is_current():
    with open(CLI_MD, encoding="utf-8") as handle:
        current = handle.read()
    assert current == cli_reference(), "docs/cli.md is out of date: run `make docs` and commit it"


def test_every_command_and_former_spelling_is_on_the_page():
    text = cli_reference()
    for name in COMMANDS:
        assert f"\n## {name}\n" in text and f"obiwan-h5 {name} " in text
    for former in ("`demo` | --dir | -o/--output", "`subset` | --sample-bricks | --sample",
                   "`plot` | --output-dir | -o/--output", "`simulate` | OUT (positional) | -o/--output OUT"):
        assert former in text, former
