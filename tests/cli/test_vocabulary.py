"""One command-line vocabulary: every command, and the functions behind them, name
the same thing the same way; former spellings still work, each with one deprecation line."""

import argparse
import inspect
import json
import os
import warnings

import fitsio
import h5py
import pytest

import obiwan_h5
from obiwan_h5.cli import COMMANDS, build_parser, main
from obiwan_h5.cli.options import flag_text
from obiwan_h5.core.bricks import DEFAULT_SEED
from obiwan_h5.read.reader import DEFAULT_BATCH_ROWS

# a valid command line of each command, short of its output
BASE = {
    "simulate": ["simulate"],
    "derive": ["derive", "--data-dir", "prod"],
    "demo": ["demo"],
    "info": ["info", "in.h5"],
    "validate": ["validate", "in.h5"],
    "view": ["view", "in.h5", "--columns", "ra"],
    "subset": ["subset", "in.h5"],
    "export": ["export", "in.h5"],
    "export-fits": ["export-fits", "in.h5"],
    "maps": ["maps", "in.h5", "--nside", "64"],
    "plot": ["plot", "in.h5"],
}
WRITERS = [name for name in COMMANDS if name not in ("info", "validate")]


def parse(argv):
    return build_parser(argv).parse_args(argv)


def deprecations(text):
    return [line for line in text.splitlines() if "is deprecated; use" in line]


def brick_names_of(path):
    with h5py.File(path, "r") as handle:
        return [name.decode() for name in handle["bricks/name"][:]]


def test_every_command_is_covered():
    assert set(BASE) == set(COMMANDS)


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_every_writing_command_takes_o_output(command, flag):
    assert parse(BASE[command] + [flag, "out"]).output == "out"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_version_before_and_after_the_command(command, capsys):
    for argv in (["--version"], BASE[command] + ["--version"], [command, "--version"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
        assert capsys.readouterr().out.strip() == f"obiwan-h5 {obiwan_h5.__version__}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_verbose_before_or_after_the_command(command):
    argv = BASE[command] + (["-o", "out"] if command in WRITERS else [])
    assert parse(argv).verbose is False
    assert parse(["-v"] + argv).verbose is True
    assert parse(argv + ["--verbose"]).verbose is True


def test_one_default_seed_and_batch_rows():
    from obiwan_h5.job.maps import run_maps
    from obiwan_h5.plot.figures import bricks_used, make_figures
    from obiwan_h5.read.export import export_fits
    from obiwan_h5.read.export_parquet import export_parquet
    from obiwan_h5.read.maps import make_maps
    from obiwan_h5.read.subset import make_subset
    from obiwan_h5.read.validate import validate
    from obiwan_h5.sim.demo import run_demo
    from obiwan_h5.sim.simulate import simulate

    for function in (make_figures, bricks_used, make_subset, simulate, run_demo):
        assert inspect.signature(function).parameters["seed"].default == DEFAULT_SEED, function
    for function in (make_figures, make_subset, export_fits, export_parquet, validate, make_maps, run_maps,
                     obiwan_h5.DerivedFile.iter_batches):
        assert inspect.signature(function).parameters["batch_rows"].default == DEFAULT_BATCH_ROWS, function
    from obiwan_h5.cli.options import seed_arg

    seeded = [name for name in COMMANDS if _has_option(name, "--seed")]
    assert sorted(seeded) == ["demo", "export", "export-fits", "plot", "simulate", "subset"]
    batched = [name for name in COMMANDS if _has_option(name, "--batch-rows")]
    assert sorted(batched) == ["export", "export-fits", "maps", "plot", "subset", "validate"]
    for name in seeded:
        argv = BASE[name] + (["-o", "out"] if name in WRITERS else [])
        assert seed_arg(parse(argv)) == DEFAULT_SEED
    for name in batched:
        argv = BASE[name] + (["-o", "out"] if name in WRITERS else [])
        assert parse(argv).batch_rows == DEFAULT_BATCH_ROWS
    for name in WRITERS:  # each help text shows the default it uses
        text = " ".join(_subparser(name).format_help().split())
        if name in seeded:
            assert f"(default {DEFAULT_SEED})" in text
        if name in batched:
            assert f"default {DEFAULT_BATCH_ROWS})" in text


def _subparser(name):
    parser = build_parser([name])
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


def _has_option(name, flag):
    return any(flag in action.option_strings for action in _subparser(name)._actions)


def test_bricks_and_columns_mean_one_thing():
    """``--bricks`` takes a brick list wherever it is shown; ``--columns`` names or globs."""
    for name in COMMANDS:
        for action in _subparser(name)._actions:
            if "--bricks" in action.option_strings and action.help != argparse.SUPPRESS:
                assert action.metavar == "FILE|LIST|-", name
                assert "comma list" in action.help and "standard input" in action.help, name
            if "--columns" in action.option_strings and action.help != argparse.SUPPRESS:
                assert action.metavar == "LIST" and "globs" in action.help, name
    assert _has_option("simulate", "--n-bricks") and _has_option("demo", "--n-bricks")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_says_what_a_command_does(command):
    """Users have no SPEC: help cites pages of docs/, and shows examples."""
    text = _subparser(command).format_help()
    assert "SPEC" not in text and "examples:\n  obiwan-h5 " in text


def test_errors_name_the_new_flags():
    assert flag_text("give `output`; `n_bricks` or `bricks`; `sample` and `seed`") == (
        "give -o/--output; --n-bricks or --bricks; --sample and --seed")


# ------------------------------------------------------------------------- former spellings

@pytest.mark.parametrize("argv,old,new,dest,value", [
    (["demo", "--dir", "d"], "--dir", "-o/--output", "output", "d"),
    (["demo", "--bricks", "3"], "--bricks N", "--n-bricks N", "n_bricks", 3),
    (["simulate", "d"], "the positional OUT", "-o/--output OUT", "output", "d"),
    (["simulate", "-o", "d", "--bricks", "2"], "--bricks N", "--n-bricks N", "n_bricks", 2),
    (["simulate", "-o", "d", "--brick-list", "b.txt"], "--brick-list", "--bricks", "bricks", "b.txt"),
    (["subset", "in.h5", "-o", "o.h5", "--sample-bricks", "0.5"], "--sample-bricks", "--sample", "sample", 0.5),
    (["plot", "in.h5", "--output-dir", "figs"], "--output-dir", "-o/--output", "output", "figs"),
    (["info", "in.h5", "--bricks"], "--bricks", "--list-bricks", "list_bricks", True),
    (["info", "in.h5", "--columns"], "--columns", "--list-columns", "list_columns", True),
])
def test_former_spellings_work_with_one_line(argv, old, new, dest, value, capsys):
    args = parse(argv)
    assert getattr(args, dest) == value
    lines = deprecations(capsys.readouterr().err)
    assert lines == [f"obiwan-h5 {argv[0]}: warning: {old} is deprecated; use {new}"]


def test_new_spellings_print_nothing(capsys):
    parse(["simulate", "-o", "d", "--n-bricks", "2"])
    parse(["simulate", "-o", "d", "--bricks", "0001p000"])
    parse(["demo", "-o", "d", "--bricks", "0001p000,0002p000"])
    parse(["info", "in.h5", "--list-bricks", "--list-columns"])
    assert capsys.readouterr().err == ""


def test_former_and_new_spelling_together_are_refused(capsys):
    for argv in (["demo", "--dir", "a", "-o", "b"], ["simulate", "a", "-o", "b"],
                 ["simulate", "-o", "a", "--bricks", "2", "--n-bricks", "3"]):
        with pytest.raises(SystemExit) as stop:
            parse(argv)
        assert stop.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parse(["simulate", "--n-bricks", "2"])
    # one line naming the missing option and where to look, not the usage block
    err = capsys.readouterr().err
    assert err == "obiwan-h5 simulate: error: the option -o/--output is required (see 'obiwan-h5 simulate --help')\n"


def test_former_spellings_run(dr5_derived, tmp_path, capsys):
    """End to end: the old spellings give what the new ones give."""
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "new.h5"), "--sample", "0.5"]) == 0
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "old.h5"), "--sample-bricks", "0.5"]) == 0
    assert brick_names_of(tmp_path / "new.h5") == brick_names_of(tmp_path / "old.h5")
    capsys.readouterr()
    assert main(["info", dr5_derived, "--list-bricks"]) == 0
    new = capsys.readouterr()
    assert main(["info", dr5_derived, "--bricks"]) == 0
    old = capsys.readouterr()
    assert old.out == new.out and len(deprecations(old.err)) == 1 and not deprecations(new.err)
    assert main(["plot", dr5_derived, "--output-dir", str(tmp_path / "figs"), "--only", "skymap"]) == 0
    assert os.path.exists(tmp_path / "figs" / "index.html")
    assert len(deprecations(capsys.readouterr().err)) == 1


@pytest.mark.slow
def test_former_simulate_spelling_runs(tmp_path, capsys):
    listing = tmp_path / "bricks.txt"
    listing.write_text("1741p242\n")
    common = ["--rsdirs", "1", "--per-rsdir", "10", "--processes", "1"]
    assert main(["simulate", str(tmp_path / "old"), "--bricks", "1"] + common) == 0
    assert main(["simulate", str(tmp_path / "list"), "--brick-list", str(listing)] + common) == 0
    assert len(deprecations(capsys.readouterr().err)) == 4
    assert main(["simulate", "-o", str(tmp_path / "new"), "--n-bricks", "1"] + common) == 0
    assert deprecations(capsys.readouterr().err) == []
    for name in ("randoms.fits", "bricks.txt", "survey-bricks.fits"):
        assert (tmp_path / "old" / name).read_bytes() == (tmp_path / "new" / name).read_bytes()
    assert (tmp_path / "list" / "bricks.txt").read_text() == "1741p242\n"


def test_former_keywords_of_the_python_api_warn(dr5_derived, tmp_path):
    from obiwan_h5.plot import make_figures
    from obiwan_h5.read.subset import make_subset
    from obiwan_h5.sim.simulate import simulate

    with pytest.warns(DeprecationWarning, match="'sample_fraction' is deprecated; use 'sample'"):
        old = make_subset(dr5_derived, str(tmp_path / "old.h5"), sample_fraction=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = make_subset(dr5_derived, str(tmp_path / "new.h5"), sample=0.5)
    assert old["bricks"] == new["bricks"]
    with pytest.warns(DeprecationWarning, match="'out_dir' is deprecated; use 'output'") as caught:
        make_figures(dr5_derived, out_dir=str(tmp_path / "figs"), only="skymap")
    # attributed to the caller's line (through the lazy obiwan_h5.plot.make_figures), so shown
    assert [w.filename for w in caught] == [__file__]
    assert os.path.exists(tmp_path / "figs" / "numbers.json")
    with pytest.raises(TypeError, match="both 'out_dir' and its new name 'output'"):
        make_figures(dr5_derived, out_dir="a", output="b")
    with pytest.warns(DeprecationWarning) as caught:
        names = simulate(out_dir=str(tmp_path / "sim"), bricknames=["1741p242"], rsdirs=1, per_rsdir=10)
    assert names == ["1741p242"]
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["bricknames", "out_dir"]
    with pytest.warns(DeprecationWarning, match="'nbricks' is deprecated; use 'n_bricks'"):
        assert len(simulate(str(tmp_path / "sim2"), nbricks=1, rsdirs=1, per_rsdir=10)) == 1


# ---------------------------------------------------------------- brick lists, everywhere

@pytest.fixture(scope="module")
def listed(dr5_derived, tmp_path_factory):
    """Two bricks of the derived file, as a comma list and as a file."""
    names = brick_names_of(dr5_derived)[1:3]
    listing = tmp_path_factory.mktemp("bricks") / "two.txt"
    listing.write_text(f"# two bricks\n{names[1]}\n{names[0]}\n")
    return names, {"list": ",".join(reversed(names)), "file": str(listing)}


@pytest.mark.parametrize("form", ["list", "file"])
def test_subset_export_plot_take_a_brick_list_or_file(dr5_derived, listed, form, tmp_path):
    names, given = listed
    bricks = given[form]
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "s.h5"), "--bricks", bricks, "--columns", "ra"]) == 0
    assert brick_names_of(tmp_path / "s.h5") == names
    assert main(["export", dr5_derived, "-o", str(tmp_path / "e.fits"), "--bricks", bricks, "--columns", "ra",
                 "--summary"]) == 0
    assert [name.strip() for name in fitsio.read(str(tmp_path / "e.fits"), ext="SUMMARY")["brickname"]] == names
    assert main(["plot", dr5_derived, "-o", str(tmp_path / "p"), "--bricks", bricks, "--only", "skymap"]) == 0
    with open(tmp_path / "p" / "numbers.json") as handle:
        assert json.load(handle)["bricks"]["names"] == names


@pytest.mark.parametrize("form", ["list", "file"])
def test_derive_takes_a_brick_list_or_file(dr5_production, dr5_derived, listed, form, tmp_path):
    names, given = listed
    output = str(tmp_path / "two.h5")
    assert main(["derive", "--data-dir", dr5_production, "-o", output, "--bricks", given[form]]) == 0
    assert brick_names_of(output) == names
    with obiwan_h5.open(output) as two, obiwan_h5.open(dr5_derived) as full:
        assert two.read("unique_id", as_="numpy")["unique_id"].tolist() == (
            full.read("unique_id", bricks=names, as_="numpy")["unique_id"].tolist())
    # the list is recorded, so that resume checks it like a file's path
    assert main(["derive", "--data-dir", dr5_production, "-o", output, "--bricks", given[form], "--resume"]) == 0


def test_simulate_and_demo_take_a_brick_list_or_file(tmp_path):
    listing = tmp_path / "bricks.txt"
    listing.write_text("3301m002\n1741p242\n")
    for bricks in ("3301m002,1741p242", str(listing)):
        args = parse(["simulate", "-o", "d", "--bricks", bricks])
        assert args.bricks == bricks and args.n_bricks == 4
        assert parse(["demo", "--bricks", bricks]).bricks == bricks
    from obiwan_h5.sim.simulate import simulate

    assert simulate(str(tmp_path / "a"), bricks="3301m002,1741p242", rsdirs=1, per_rsdir=10) == [
        "1741p242", "3301m002"]
    assert simulate(str(tmp_path / "b"), bricks=str(listing), rsdirs=1, per_rsdir=10) == ["1741p242", "3301m002"]


def test_one_default_seed_gives_the_same_sample(dr5_derived, tmp_path):
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "a.h5"), "--sample", "0.5"]) == 0
    assert main(["subset", dr5_derived, "-o", str(tmp_path / "b.h5"), "--sample", "0.5",
                 "--seed", str(DEFAULT_SEED)]) == 0
    assert brick_names_of(tmp_path / "a.h5") == brick_names_of(tmp_path / "b.h5")
    assert main(["plot", dr5_derived, "-o", str(tmp_path / "p"), "--sample", "0.5", "--only", "skymap"]) == 0
    with open(tmp_path / "p" / "numbers.json") as handle:
        bricks = json.load(handle)["bricks"]
    assert bricks["seed"] == DEFAULT_SEED and bricks["names"] == brick_names_of(tmp_path / "a.h5")
    assert main(["export", dr5_derived, "-o", str(tmp_path / "e.fits"), "--sample", "0.5", "--columns", "ra",
                 "--summary"]) == 0
    exported = [name.strip() for name in fitsio.read(str(tmp_path / "e.fits"), ext="SUMMARY")["brickname"]]
    assert exported == brick_names_of(tmp_path / "a.h5")


def test_export_samples_the_chosen_bricks(dr5_derived, listed, tmp_path, capsys):
    from obiwan_h5.read.common import sample_bricks

    names, given = listed
    assert main(["export", dr5_derived, "-o", str(tmp_path / "e.parquet"), "--bricks", given["list"],
                 "--sample", "0.5", "--seed", "4", "--columns", "ra", "--summary"]) == 0
    import pyarrow.parquet as pq

    summary = pq.read_table(str(tmp_path / "e.summary.parquet")).column("brickname").to_pylist()
    assert [name.strip() for name in summary] == sample_bricks(names, 0.5, 4) and len(summary) == 1
    capsys.readouterr()
    assert main(["export", dr5_derived, "-o", str(tmp_path / "f.fits"), "--seed", "4"]) == 2
    assert "--seed only applies to --sample" in capsys.readouterr().err
