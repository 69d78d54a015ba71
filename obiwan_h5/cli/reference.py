"""The command-line reference (docs/cli.md), generated from the argument parsers.

    python -m obiwan_h5.cli.reference > docs/cli.md      (what `make docs` runs)

Each command's usage, description, options, former spellings and examples come from its
parser (`obiwan_h5.cli.build_parser`), so the page cannot disagree with ``--help``;
`tests/cli/test_reference.py` fails when docs/cli.md is not what this prints. The prose
that is not about one option is here.
"""

import argparse
import re
import sys

from ..core.bricks import DEFAULT_SEED
from . import COMMANDS, build_parser
from .options import HelpFormatter

__all__ = ["cli_reference"]

# the width of the usage blocks: fixed, so the page does not depend on the terminal
WIDTH = 100

# command -> the page that explains it in depth
DETAILS = {
    "simulate": "[concepts.md](concepts.md#a-production)",
    "derive": "[derive.md](derive.md)",
    "demo": "[quickstart.md](quickstart.md)",
    "info": "[reading.md](reading.md#obiwan-h5-info)",
    "validate": "[reading.md](reading.md#obiwan-h5-validate)",
    "view": "[reading.md](reading.md#obiwan-h5-view)",
    "subset": "[reading.md](reading.md#obiwan-h5-subset)",
    "export": "[reading.md](reading.md#obiwan-h5-export)",
    "export-fits": "[reading.md](reading.md#obiwan-h5-export-fits)",
    "maps": "[maps.md](maps.md)",
    "plot": "[plot.md](plot.md)",
}

INTRO = """\
**One vocabulary.** Every command says the same thing the same way:

- `-o`/`--output` names what it writes (a file, or the directory of `simulate`, `demo` and
  `plot`);
- `--bricks` is a brick list: a comma-separated list of names (`0001p000,0002p000`), a file
  of names (one or more per line, `#` comments), or `-` for standard input; `--n-bricks N`
  is the number of bricks `simulate` and `demo` draw;
- `--sample FRACTION --seed S` keeps a random fraction of the bricks (at least one), the
  same bricks for the same seed; the default seed is {seed} everywhere (`simulate` and `demo`
  seed their simulation with it too);
- `--columns` takes names or shell-style globs (`tractor_flux_*`, `tractor_flux_[grz]`)
  separated by commas or spaces; quote globs so that the shell leaves them alone. The
  option may be repeated, and `--columns-file FILE` reads the same from a file (`#`
  comments, `-` for standard input);
- `--batch-rows N` bounds the memory of every command that streams rows (default {batch_rows});
- `--version` prints the version and `-v`/`--verbose` logs debug messages, before or after
  the command (`obiwan-h5 -v derive ...`, `obiwan-h5 export --version`); `-q`/`--quiet`
  prints only warnings and errors (no progress, no INFO line, no `wrote ...` report).

`python -m obiwan_h5 ...` is the same command (for `srun python -m obiwan_h5 derive ...`).

`obiwan-h5 COMMAND --help` lists the options of a command; this page, generated from the
same parsers, lists them all, and the page in the last column of the table explains them.

**Exit status.** 0 success; 1 when `derive` (or `demo`) had a failed brick, when
`validate` found problems, or when `plot` could draw none of the chosen figures; 2 for bad
input — a missing or unreadable file, an unknown column or brick, a malformed option (with
the closest option for a misspelt one), an output that exists without `--overwrite` — for
an output that cannot be written (no space left, a quota, a name too long, a read-only file
system), or for a missing Python package (h5py, pyarrow, ...), with a one-line message
`obiwan-h5 COMMAND: error: ...` on standard error (for a missing package: what to install);
130 when interrupted.

**Files are not replaced silently.** `derive`, `view`, `subset`, `export` and `maps` refuse
an existing output file unless given `--overwrite` (`derive` also accepts `--resume`);
`simulate` writes only into an absent or empty directory, or one it wrote before with
`--overwrite`. The exceptions: `plot` replaces the figures of the same name in its output
directory, and `demo` rewrites everything in its directory but an unchanged production.

The examples on this page run in order from a directory holding the demo (`make demo`)."""

EXAMPLES_RULE = """\
## Examples in these pages

The example blocks of the README and of every page in `docs/` are run by
`tests/test_docs.py`, which is part of `make test`:

- blocks marked `bash` are run, in page order, in a temporary directory holding a fresh
  `demo/` (made by `obiwan-h5 demo`), with the environment's `obiwan-h5` and `python` first
  on the PATH; blank and comment lines are skipped, a trailing `\\` continues a command, and
  every command must exit with status 0. A later block may use a file an earlier block of
  the same page wrote.
- blocks marked `python` are run as scripts in the same directory; each block is
  self-contained (blocks share files, not variables).
- commands that cannot run on a workstation — NERSC (`srun`, `sbatch`, `salloc`, `module`,
  `lfs`), installation (`apt-get`, `pip`, `python -m venv`, `source`, `conda`) and `make`
  targets — are in blocks marked `console`, which are not run. The test fails on a `bash`
  block that holds one of them.
- output, file trees and listings are in blocks marked `text`."""


def _subparsers(parser):
    """``{name: parser}`` of the commands, in the order of `COMMANDS`."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: action.choices[name] for name in COMMANDS}


def _usage(parser, prog=None):
    formatter = HelpFormatter(prog=prog or parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().rstrip()


def _cell(text):
    """Text for a Markdown table cell: pipes escaped, angle brackets kept literal."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _spelling(action):
    """How an option is written: ``-o OUT``, ``--overwrite`` or the positional ``IN``."""
    if not action.option_strings:
        return action.metavar or action.dest
    if action.nargs == 0:
        value = ""
    elif action.metavar:
        value = f" {action.metavar}"
    elif action.choices:
        value = " {" + ",".join(action.choices) + "}"
    else:
        value = f" {action.dest.upper()}"
    return ", ".join(f"`{flag}{value}`" for flag in action.option_strings)


def _help(action):
    """The help text with its ``%(default)s`` filled in, as ``--help`` shows it."""
    return (action.help or "") % dict(vars(action), prog="obiwan-h5")


COMMON = ("help", "version", "verbose")


def _options_table(parser):
    rows = ["| option | what |", "|---|---|"]
    for action in parser._actions:
        if action.help is argparse.SUPPRESS or action.dest in COMMON:
            continue
        name = _spelling(action)
        name = name if name.startswith("`") else f"`{name}`"
        rows.append(f"| {_cell(name)} | {_cell(_help(action))} |")
    return "\n".join(rows)


def former_spellings(parsers):
    """``[(command, former spelling, what to write now)]`` of every command."""
    return [(name, *action.former_spelling) for name, parser in parsers.items() for action in parser._actions
            if getattr(action, "former_spelling", None)]


def _command_section(name, parser):
    parts = [f"## {name}", "", "```text", _usage(parser), "```", ""]
    for paragraph in (parser.description or "").splitlines():
        if paragraph.strip():
            parts += [paragraph, ""]
    parts += [f"More: {DETAILS[name]}.", "", _options_table(parser), ""]
    examples = getattr(parser, "examples", ())
    if examples:
        parts += ["```bash", *examples, "```", ""]
    return parts


def cli_reference():
    """The text of docs/cli.md."""
    parser = build_parser([], every_command=True)
    parsers = _subparsers(parser)
    top = _usage(parser, "obiwan-h5")
    lines = ["# Command-line reference", "",
             "<!-- generated from the argument parsers by `python -m obiwan_h5.cli.reference` (`make docs`); "
             "edit obiwan_h5/cli/, not this page -->", "",
             "```text", top, "```", "",
             "| command | what it does | details |", "|---|---|---|"]
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"| [`{name}`](#{name}) | {_cell(help_text)} | {DETAILS[name]} |")
    from ..read.reader import DEFAULT_BATCH_ROWS  # h5py: loaded only to write the page

    lines += ["", INTRO.format(seed=DEFAULT_SEED, batch_rows=DEFAULT_BATCH_ROWS), ""]
    former = former_spellings(parsers)
    if former:
        lines += ["**Former spellings.** These still work in this release, each with one line on standard "
                  "error (`obiwan-h5 COMMAND: warning: ... is deprecated; use ...`); they will be removed in "
                  "the next one.", "", "| command | former spelling | now |", "|---|---|---|"]
        lines += [f"| `{name}` | {_cell(old)} | {_cell(new)} |" for name, old, new in former]
        lines.append("")
    lines += [EXAMPLES_RULE, ""]
    for name, sub in parsers.items():
        lines += _command_section(name, sub)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(cli_reference())
