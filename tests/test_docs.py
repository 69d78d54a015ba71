"""The examples of README.md and docs/*.md run as written, on a fresh demo.

The rule (also in docs/cli.md, "Examples in these pages"):

* A fenced block marked ```bash is run. Each page's bash and python blocks run in the
  order they appear, in one temporary directory per page that holds a fresh copy of
  `demo/` (made once per test session by ``python -m obiwan_h5.cli demo -o <tmp>/demo``;
  `demo/production/` is shared by the pages and must only be read),
  with the virtual environment's bin directory first on PATH, so `obiwan-h5` and `python`
  are the installed ones. Blank lines and comment lines are ignored; a line ending with a
  backslash continues on the next line; every command must exit with status 0. A page's
  later commands may use files its earlier commands made.
* A fenced block marked ```python is run as a script by the same python, in the same
  directory. Blocks do not share variables: each one is self-contained.
* Commands that cannot run on this machine are fenced ```console instead: NERSC commands
  (srun, sbatch, module, lfs, salloc), installation (apt-get, pip, python -m venv, source,
  conda) and `make` targets (CI runs those itself). A ```bash block containing one of these
  fails this test, naming the command, so the rule cannot be broken by accident.
* ```text marks output, file trees and listings; nothing else is allowed after a fence.

docs/format.md and docs/cli.md are generated (``python -m obiwan_h5.sim.reference``,
``python -m obiwan_h5.cli.reference``: `make docs`) and follow the same rule; the examples
of docs/cli.md are those of the commands' ``--help``.
Besides running the examples, this file checks that every page under docs/ (and
CHANGELOG.md) is linked from README.md and that every relative link (and its #anchor) of
every page resolves.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import h5py
import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOCS = os.path.join(ROOT, "docs")
BIN = os.path.dirname(sys.executable)
LANGUAGES = ("bash", "python", "console", "text")
# first words of commands that need NERSC, an installation or CI: fence them ```console
NOT_HERE = ("srun", "sbatch", "salloc", "module", "lfs", "apt-get", "apt", "sudo", "pip", "pip3",
            "source", "conda", "make")
NOT_HERE_PATTERNS = (r"\bpython3? -m (venv|pip)\b", r"(^|/)pip3? install\b")
COMMAND_TIMEOUT = 120


def pages():
    """README.md, CHANGELOG.md and every docs/*.md, as paths relative to the repository."""
    return ["README.md", "CHANGELOG.md"] + sorted(
        os.path.join("docs", name) for name in os.listdir(DOCS) if name.endswith(".md"))


def fenced_blocks(path):
    """``[(language, first_line_number, text), ...]`` of a Markdown file's fenced blocks."""
    blocks = []
    language, start, lines = None, 0, []
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            stripped = line.strip()
            if language is None:
                if stripped.startswith("```"):
                    language, start, lines = stripped[3:].strip(), number + 1, []
            elif stripped == "```":
                # blocks indented under a list item: drop the indentation
                blocks.append((language, start, textwrap.dedent("".join(lines))))
                language = None
            else:
                lines.append(line)
    assert language is None, f"{path}: fence opened at line {start - 1} is never closed"
    return blocks


def shell_commands(text, first_line):
    """``[(line_number, command), ...]``: blank and comment lines dropped, continuations joined."""
    commands, pending, pending_line = [], "", None
    for offset, line in enumerate(text.splitlines()):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            pending_line = first_line + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append((pending_line, pending + line))
        pending = ""
    if pending:
        commands.append((pending_line, pending))
    return commands


def not_runnable_here(command):
    """The word or pattern that makes a command NERSC-, install- or CI-only, or None."""
    for part in re.split(r"&&|\|\||;|\|", command):
        words = part.split()
        # skip leading VAR=value assignments
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        if words and os.path.basename(words[0]) in NOT_HERE:
            return words[0]
    for pattern in NOT_HERE_PATTERNS:
        found = re.search(pattern, command)
        if found:
            return found.group(0)
    return None


def environment():
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """A fresh demo made by the package itself, once per session (about 5-10 s)."""
    if not os.path.exists(os.path.join(BIN, "obiwan-h5")):
        pytest.skip(f"obiwan-h5 is not installed beside {sys.executable}")
    base = tmp_path_factory.mktemp("docs-demo")
    result = subprocess.run([sys.executable, "-m", "obiwan_h5.cli", "demo", "-o", str(base / "demo")],
                            cwd=base, env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"demo failed:\n{result.stdout}\n{result.stderr}"
    (base / "demo-stdout.txt").write_text(result.stdout, encoding="utf-8")
    return base / "demo"


def _counts(text, demo):
    """The lines of the demo's summary that must be the same on every machine: paths made
    relative to `demo` and byte sizes dropped."""
    text = text.replace(str(demo), "demo")
    keep = ("simulating", "bricks:", "rows:", "recovered fraction:", "view:", "10% sample:", "FITS export:")
    return [re.sub(r"\(\d+ bytes; ", "(", line.strip()) for line in text.splitlines()
            if line.strip().startswith(keep)]


def test_quickstart_shows_what_a_fresh_demo_prints(demo_dir):
    """docs/quickstart.md says its printed counts are the same on every machine: they are
    those of the demo this session made."""
    shown = next(text for language, _, text in fenced_blocks(os.path.join("docs", "quickstart.md"))
                 if language == "text" and text.startswith("simulating"))
    printed = (demo_dir.parent / "demo-stdout.txt").read_text(encoding="utf-8")
    assert _counts(shown, demo_dir) == _counts(printed, demo_dir) != []
    with h5py.File(demo_dir / "derived.h5", "r") as derived:
        rows, columns = len(derived["randoms/unique_id"]), len(derived["randoms"])
    with open(os.path.join(DOCS, "quickstart.md"), encoding="utf-8") as handle:
        assert f"touched a CCD ({rows}), {columns} columns" in handle.read()


def test_pages_are_linked_from_readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    for page in pages()[1:]:
        assert f"({page})" in readme or f"({page}#" in readme, f"README.md does not link {page}"
    assert "make demo" in readme and "make test" in readme


def _prose(path):
    """The text of a Markdown file without its fenced blocks and inline code."""
    kept, inside = [], False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip().startswith("```"):
                inside = not inside
            elif not inside:
                kept.append(re.sub(r"`[^`]*`", "", line))
    return "".join(kept)


def _anchors(path):
    """GitHub's heading anchors of a Markdown file."""
    anchors, inside = set(), False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip().startswith("```"):
                inside = not inside
            elif not inside and line.startswith("#"):
                title = line.lstrip("#").strip().lower()
                slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
                anchors.add(slug)
    return anchors


@pytest.mark.parametrize("page", pages())
def test_relative_links_resolve(page):
    path = os.path.join(ROOT, page)
    text = _prose(path)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        name, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), name)) if name else path
        assert os.path.exists(resolved), f"{page}: link {target!r} points to a missing file"
        if anchor and resolved.endswith(".md"):
            assert anchor in _anchors(resolved), f"{page}: link {target!r}: no heading with that anchor"


@pytest.mark.parametrize("page", pages())
def test_fences_follow_the_rule(page):
    for language, line, text in fenced_blocks(page):
        assert language in LANGUAGES, (
            f"{page}:{line - 1}: fence ```{language} — use one of {', '.join(LANGUAGES)} (see tests/test_docs.py)")
        if language == "bash":
            for number, command in shell_commands(text, line):
                word = not_runnable_here(command)
                assert word is None, (
                    f"{page}:{number}: `{word}` cannot run here; fence this block ```console: {command}")


def _run_bash(page, line, text, cwd):
    commands = shell_commands(text, line)
    script = ["set -o pipefail"]
    for number, command in commands:
        script.append(command)
        script.append(f'__rc=$?; if [ $__rc -ne 0 ]; then echo "{page}:{number}: exit status $__rc" >&2; '
                      f"exit $__rc; fi")
    return subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=environment(), capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT * max(1, len(commands)))


def _run_python(page, line, text, cwd, index):
    script = os.path.join(cwd, f".doc-block-{index}.py")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(text)
    return subprocess.run([os.path.join(BIN, "python"), script], cwd=cwd, env=environment(), capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT)


def _runnable(page):
    return [block for block in fenced_blocks(page) if block[0] in ("bash", "python")]


@pytest.mark.parametrize("page", [page for page in pages() if _runnable(page)])
def test_examples_run(page, demo_dir, tmp_path):
    blocks = _runnable(page)
    # never run a page that breaks the fencing rule (it could install or submit something)
    test_fences_follow_the_rule(page)
    # a fresh copy of the demo, except the 25 MB production, which examples only read
    shutil.copytree(demo_dir, tmp_path / "demo", symlinks=True, ignore=shutil.ignore_patterns("production"))
    os.symlink(demo_dir / "production", tmp_path / "demo" / "production")
    for index, (language, line, text) in enumerate(blocks):
        started = time.monotonic()
        if language == "bash":
            result = _run_bash(page, line, text, tmp_path)
        else:
            result = _run_python(page, line, text, tmp_path, index)
        assert result.returncode == 0, (
            f"{page}: ```{language} block at line {line} failed (exit {result.returncode}, "
            f"{time.monotonic() - started:.1f} s)\n--- block ---\n{text}--- stdout ---\n{result.stdout[-3000:]}"
            f"\n--- stderr ---\n{result.stderr[-3000:]}")
