"""Mistakes on the command line are one line from the command that was typed, with the
closest option; ``-q`` means quiet for every command; ``python -m obiwan_h5`` is the command."""

import os
import subprocess
import sys

import pytest

from obiwan_h5.cli import COMMANDS, main

# a valid start of each command line (the options it requires)
BASE = {
    "simulate": ["simulate", "-o", "x"], "derive": ["derive", "--data-dir", "p", "-o", "x"], "demo": ["demo"],
    "info": ["info", "in.h5"], "validate": ["validate", "in.h5"], "view": ["view", "in.h5", "-o", "x"],
    "subset": ["subset", "in.h5", "-o", "x"], "export": ["export", "in.h5", "-o", "x"],
    "export-fits": ["export-fits", "in.h5", "-o", "x"], "plot": ["plot", "in.h5", "-o", "x"],
    "maps": ["maps", "in.h5", "-o", "x", "--nside", "8"],
}


def _error(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no usage block
    return err.strip()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unknown_option_is_reported_by_the_command_typed(command, capsys):
    assert set(BASE) == set(COMMANDS)
    err = _error(capsys, BASE[command] + ["--no-such-option"])
    assert err == (f"obiwan-h5 {command}: error: unrecognized arguments: --no-such-option "
                   f"(see 'obiwan-h5 {command} --help')")


def test_a_typo_gets_the_closest_option(capsys):
    err = _error(capsys, ["export", "in.h5", "-o", "x.fits", "--colums", "ra"])
    assert err.startswith("obiwan-h5 export: error: unrecognized arguments: --colums ra (did you mean --columns?)")
    err = _error(capsys, ["subset", "in.h5", "-o", "x.h5", "--overwite"])
    assert "(did you mean --overwrite?)" in err


@pytest.mark.parametrize("command", ["view", "subset", "export", "plot", "derive", "simulate", "maps"])
def test_a_missing_output_is_one_line_naming_it(command, capsys):
    argv = [arg for arg in BASE[command] if arg not in ("-o", "x")]
    assert _error(capsys, argv) == (f"obiwan-h5 {command}: error: the option -o/--output is required "
                                    f"(see 'obiwan-h5 {command} --help')")


def test_a_bad_value_is_one_line_too(capsys):
    err = _error(capsys, ["export", "in.h5", "-o", "x", "--format", "csv"])
    assert err.startswith("obiwan-h5 export: error: argument --format: invalid choice: 'csv'")


def test_python_dash_m_obiwan_h5_is_the_command(dr5_derived):
    run = subprocess.run([sys.executable, "-m", "obiwan_h5", "info", dr5_derived], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "format           obiwan_h5 version 1" in run.stdout
    run = subprocess.run([sys.executable, "-m", "obiwan_h5", "info"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.startswith("obiwan-h5 info: error: the following arguments are required")


def test_quiet_means_warnings_and_errors_only(tmp_path, dr5_derived):
    """Nothing at all from a command that succeeds with -q: no INFO line, no status table, no
    progress, no report of what was written."""
    production, derived = str(tmp_path / "p"), str(tmp_path / "d.h5")
    script = ("import sys; from obiwan_h5.cli import main; "
              "sys.exit(max(main(argv.split('|')) for argv in sys.argv[1:]))")
    commands = [
        f"simulate|-o|{production}|--n-bricks|1|--rsdirs|1|--per-rsdir|20|--processes|1|-q",
        f"derive|--data-dir|{production}|-o|{derived}|-q",
        f"view|{dr5_derived}|-o|{tmp_path / 'v.h5'}|--columns|ra|-q",
        f"subset|{dr5_derived}|-o|{tmp_path / 's.h5'}|--columns|ra|-q",
        f"export|{dr5_derived}|-o|{tmp_path / 'x.fits'}|--columns|ra|-q",
        f"plot|{derived}|-o|{tmp_path / 'figures'}|--only|astrometry|-q",
        f"maps|{dr5_derived}|-o|{tmp_path / 'm.fits'}|--nside|8|-q",
    ]
    run = subprocess.run([sys.executable, "-c", script, *commands], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""
    assert os.path.exists(derived) and os.path.exists(tmp_path / "figures" / "index.html")
    assert os.path.exists(tmp_path / "m.fits")


def test_a_where_nested_fifty_thousand_deep_is_one_line(dr5_derived, tmp_path, capsys):
    output = str(tmp_path / "x.fits")
    assert main(["export", dr5_derived, "-o", output, "--where", "-" * 50000 + "psql_g < 1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--where" in err and "nested more than 100 levels deep" in err
    assert main(["export", dr5_derived, "-o", output, "--where", "psql_g = 22"]) == 2
    assert "compare with ==" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
