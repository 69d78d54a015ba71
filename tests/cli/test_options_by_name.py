"""Options named once: each option sets the library parameter of its name, with the
default the library has; nothing between the parser and the library renames them."""

import dataclasses
import inspect

import pytest

from obiwan_h5.cli import COMMANDS, build_parser, main
from obiwan_h5.cli.options import call_with_args, field_defaults, options_from_args
from obiwan_h5.job import DeriveOptions

# what the command line keeps for itself: its own switches, the input file, and what a
# command turns into a parameter of another name
OWN = {"command", "run", "verbose", "quiet", "progress_every", "input", "columns_file"}
OWN_BY_COMMAND = {
    "simulate": {"randoms_db", "randoms_table"},  # loads the table after the simulation
    "export": {"format"},  # chooses the writer
    "export-fits": {"format"},
    "info": {"json", "list_columns", "list_bricks"},
}
# DeriveOptions fields no flag sets (tuning for tests and experiments)
NO_FLAG = {"max_call_bytes"}


def subparser(name):
    parser = build_parser([name])
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def dests(name):
    """What the options of a command set (a former spelling: what it sets for the new one)."""
    return {getattr(action, "target", action.dest) for action in subparser(name)._actions
            if action.dest != "help" and action.option_strings != ["--version"]}


def library_function(name):
    from obiwan_h5.job.maps import run_maps
    from obiwan_h5.plot.figures import make_figures
    from obiwan_h5.read.export import WRITERS
    from obiwan_h5.read.info import describe
    from obiwan_h5.read.subset import make_subset
    from obiwan_h5.read.validate import validate
    from obiwan_h5.read.view import make_view
    from obiwan_h5.sim.demo import run_demo
    from obiwan_h5.sim.simulate import simulate

    return {"simulate": simulate, "demo": run_demo, "info": describe, "validate": validate, "view": make_view,
            "subset": make_subset, "export": WRITERS["fits"], "export-fits": WRITERS["fits"], "maps": run_maps,
            "plot": make_figures}[name]


def test_every_derive_option_is_a_field_of_derive_options_with_its_default():
    fields = {field.name: field for field in dataclasses.fields(DeriveOptions)}
    options = dests("derive") - OWN
    assert options == set(fields) - NO_FLAG
    defaults = field_defaults(DeriveOptions)
    for action in subparser("derive")._actions:
        if action.dest in options and action.dest in defaults:
            assert action.default == defaults[action.dest], action.dest


def test_derive_options_are_built_by_name(tmp_path):
    """Every flag given, with a value other than its default, arrives in its field."""
    argv = ["derive", "--data-dir", "prod", "-o", "out.h5", "--randoms", "r.fits", "--randoms-db", "host=x",
            "--randoms-table", "t", "--db-connections", "2", "--db-timeout", "5", "--dr-dir", "dr5",
            "--survey-bricks", "sb.fits", "--bricks", "0001p000", "--objtype", "lrg", "--expect-rsdirs", "3",
            "--match-radius", "0.5", "--keep-all-apflux", "--resume", "--verify-inputs", "--max-memory", "7",
            "--chunk-kb", "8", "--compression", "gzip", "--compression-level", "4", "--no-shuffle",
            "--mpi-info", "a=b", "--mpi-info", "c=d", "--align", "4096"]
    args = build_parser(argv).parse_args(argv)
    options = options_from_args(DeriveOptions, args)
    expected = DeriveOptions(
        "prod", "out.h5", randoms="r.fits", randoms_db="host=x", randoms_table="t", db_connections=2, db_timeout=5,
        dr_dir="dr5", survey_bricks="sb.fits", bricks="0001p000", objtype="lrg", expect_rsdirs=3, match_radius=0.5,
        keep_all_apflux=True, resume=True, verify_inputs=True, max_memory=7, chunk_kb=8, compression="gzip",
        compression_level=4, shuffle=False, mpi_info={"a": "b", "c": "d"}, align=4096)
    assert options == expected
    defaults = options_from_args(DeriveOptions, build_parser(argv[:5]).parse_args(argv[:5]))
    assert defaults == DeriveOptions("prod", "out.h5")


@pytest.mark.parametrize("command", [name for name in COMMANDS if name != "derive"])
def test_every_option_reaches_the_function_of_its_name(command):
    """An option is a parameter of the command's function, of the same name, or one the
    command line uses itself: none is dropped on the way (a new flag without its
    parameter fails here)."""
    parameters = set(inspect.signature(library_function(command)).parameters)
    left = dests(command) - OWN - OWN_BY_COMMAND.get(command, set()) - parameters
    assert not left, f"{command}: options that reach no parameter: {sorted(left)}"


def test_the_export_writers_take_the_same_parameters():
    from obiwan_h5.read.export import WRITERS

    assert [list(inspect.signature(writer).parameters) for writer in WRITERS.values()] == [
        list(inspect.signature(WRITERS["fits"]).parameters)] * len(WRITERS)


def test_call_with_args_passes_options_by_name_and_keeps_given_values():
    class Args:
        output, batch_rows, overwrite, unrelated = "o", 10, True, "x"

    def function(path, output, batch_rows=1, overwrite=False, seed=3, **rest):
        return path, output, batch_rows, overwrite, seed, rest

    assert call_with_args(function, Args(), "in", batch_rows=99) == ("in", "o", 99, True, 3, {})


def test_a_command_passes_its_options_to_the_library(monkeypatch, tmp_path):
    """End to end through `main`: the values given reach the function's parameters."""
    import obiwan_h5.cli.read as read_commands

    seen = {}

    def fake_subset(path, output, columns=None, bricks=None, sample=None, seed=1, batch_rows=1, overwrite=False,
                    progress=False):
        seen.update(path=path, output=output, columns=columns, sample=sample, seed=seed, batch_rows=batch_rows,
                    overwrite=overwrite, progress=progress)
        (tmp_path / "o.h5").write_text("")
        return {"rows": 0, "columns": [], "bricks": []}

    monkeypatch.setattr(read_commands, "make_subset", fake_subset)
    assert main(["subset", "in.h5", "-o", str(tmp_path / "o.h5"), "--sample", "0.5", "--seed", "9", "--batch-rows",
                 "77", "--overwrite", "--columns", "ra,dec", "-q"]) == 0
    assert seen == {"path": "in.h5", "output": str(tmp_path / "o.h5"), "columns": "ra,dec", "sample": 0.5, "seed": 9,
                    "batch_rows": 77, "overwrite": True, "progress": False}
