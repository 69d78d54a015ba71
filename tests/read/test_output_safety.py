"""The reading commands' outputs are written whole or not at all, and their inputs are only
regular files: two runs on one output, a full disk, long names, FIFOs."""

import os
import subprocess
import sys
import textwrap

import fitsio
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.read import export_fits as fits_writer
from obiwan_h5.read.export import export_fits

pq = pytest.importorskip("pyarrow.parquet")
from obiwan_h5.read import export_parquet as parquet_writer  # noqa: E402


def _left_beside(directory, *keep):
    """Everything in `directory` but `keep`: a failed command must leave nothing."""
    return sorted(set(os.listdir(directory)) - set(keep))


# ------------------------------------------------------------- two runs on one output

@pytest.mark.parametrize("form", ["parquet", "fits"])
def test_two_exports_to_one_output_never_mix(dr5_derived, tmp_path, monkeypatch, form):
    """A second export to the same output starts while the first is writing (nested here,
    so that the interleaving is certain). Each writes its own partial: both succeed, and
    the output is the complete file of the one that finished last."""
    output = str(tmp_path / f"x.{form}")
    module = parquet_writer if form == "parquet" else fits_writer
    function = "_table" if form == "parquet" else "write_provenance"  # called while the output is written
    original = getattr(module, function)
    started = []

    def second_export_meanwhile(*args, **kwargs):
        if not started:
            started.append(True)
            assert main(["export", dr5_derived, "-o", output, "--columns", "ra", "--overwrite", "-q"]) == 0
        return original(*args, **kwargs)

    monkeypatch.setattr(module, function, second_export_meanwhile)
    assert main(["export", dr5_derived, "-o", output, "--columns", "ra,dec", "--overwrite", "-q"]) == 0
    assert started
    if form == "parquet":
        table = pq.read_table(output)
        assert table.column_names == ["ra", "dec"] and table.num_rows == 1586
    else:
        assert fitsio.FITS(output)["RANDOMS"].get_colnames() == ["ra", "dec"]
        assert len(fitsio.read(output, ext="RANDOMS")) == 1586
    assert _left_beside(tmp_path, f"x.{form}") == []


def test_hdf5_takes_no_lock_of_its_own_on_a_partial(tmp_path):
    """The writer holds its partial's lock; where ``flock`` is emulated by ``fcntl`` locks
    on the whole file (NFS), HDF5's own lock on the file it opens would meet it and HDF5
    would refuse the file. No ``flock`` is held on a new HDF5 partial while it is written."""
    import fcntl

    from obiwan_h5.outputs import writing
    from obiwan_h5.read.common import new_hdf5

    with writing(str(tmp_path / "x.h5")) as partial, new_hdf5(partial) as handle:
        handle["x"] = np.arange(3)
        probe = os.open(partial.path, os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if HDF5 holds one
        finally:
            os.close(probe)


# ------------------------------------------------------------------------ a full disk

def _nearly_full(tmpfs, free_kib):
    """A 4 MiB file system of our own, filled but for `free_kib` KiB."""
    where = tmpfs(4096)
    stats = os.statvfs(where)
    assert stats.f_blocks * stats.f_frsize <= 4 << 20  # never the machine's own disk
    with open(where / "filler", "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, stats.f_bavail * stats.f_frsize - free_kib * 1024)
    return where


def _run(*argv, script=None):
    command = [sys.executable, "-c", script, *argv] if script else [sys.executable, "-m", "obiwan_h5", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


# fills what space is left once the first column is copied: the next writes fail mid-file
FILL_DURING_SUBSET = textwrap.dedent("""
    import os, sys
    import obiwan_h5.read.subset as subset
    from obiwan_h5.cli import main
    copy = subset._copy_rows
    def copy_then_fill(*args, **kwargs):
        copy(*args, **kwargs)
        folder = os.path.dirname(os.path.abspath(sys.argv[sys.argv.index("-o") + 1]))
        stats = os.statvfs(folder)
        assert stats.f_blocks * stats.f_frsize < 64 << 20, "fills only the test's own small file system"
        if not os.path.exists(os.path.join(folder, "filler2")):
            with open(os.path.join(folder, "filler2"), "wb") as handle:
                os.posix_fallocate(handle.fileno(), 0, stats.f_bavail * stats.f_frsize)
    subset._copy_rows = copy_then_fill
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["fits rows", "fits size", "parquet", "view", "subset size", "subset rows", "plot"])
def test_a_full_disk_is_one_line_exit_2_and_leaves_nothing(dr5_derived, tmpfs, case):
    # KiB left: too little for anything; for the data (refused before writing); or room for
    # the subset, which a filler then takes while it is written
    where = _nearly_full(tmpfs, {"fits size": 256, "subset size": 256, "subset rows": 3000}.get(case, 16))
    name = "figures" if case == "plot" else "out.parquet" if case == "parquet" else "out.fits" if "fits" in case \
        else "out.h5"
    output = str(where / name)
    argv = {
        "fits rows": ["export", dr5_derived, "-o", output, "--where", "obiwan_mask >= 0"],  # size unknown before
        "fits size": ["export", dr5_derived, "-o", output],  # size known: refused before writing
        "parquet": ["export", dr5_derived, "-o", output, "--summary"],
        "view": ["view", dr5_derived, "-o", output, "--columns", "ra,dec"],
        "subset size": ["subset", dr5_derived, "-o", output],
        "subset rows": ["subset", dr5_derived, "-o", output, "--batch-rows", "100"],
        "plot": ["plot", dr5_derived, "-o", output, "--only", "recovery"],
    }[case]
    run = _run(*argv, "-q", script=FILL_DURING_SUBSET if case == "subset rows" else None)
    assert run.returncode == 2, run.stderr[-3000:]  # not a traceback (1), not a segfault (139)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"obiwan-h5 {argv[0]}: error: {output}: "), run.stderr[-3000:]
    assert "no space left on device" in lines[0] or "needs about" in lines[0]
    assert _left_beside(where, "filler", "filler2") == []


# ---------------------------------------------------------------------- long names

def test_long_output_names_work_and_too_long_ones_are_one_line(dr5_derived, tmp_path, capsys):
    stem = str(tmp_path / ("x" * 240))  # a name of about 248 bytes: its ".partial" would be too long
    assert main(["view", dr5_derived, "-o", stem + ".view.h5", "--columns", "ra", "-q"]) == 0
    assert main(["subset", dr5_derived, "-o", stem + ".sub1.h5", "--columns", "ra", "-q"]) == 0
    assert main(["export", dr5_derived, "-o", stem + ".parquet", "--columns", "ra", "-q"]) == 0
    assert pq.read_table(stem + ".parquet").num_rows == 1586
    capsys.readouterr()
    too_long = str(tmp_path / ("y" * 250 + ".parquet"))
    assert main(["export", dr5_derived, "-o", too_long, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "more than the 255 this file system allows" in err[0]
    assert sorted(len(name) for name in os.listdir(tmp_path)) == [248, 248, 248]


# ----------------------------------------------------------------------------- FIFOs

READ_FIFOS = textwrap.dedent("""
    import os, sys
    from obiwan_h5.cli import main
    import obiwan_h5
    from astropy.table import Table
    for path in sys.argv[1:]:
        os.chdir(os.path.dirname(path))
        for argv in [["info", path], ["validate", path], ["export", path, "-o", "o.fits"],
                     ["view", path, "-o", "o.h5", "--columns", "ra"], ["subset", path, "-o", "s.h5"],
                     ["plot", path, "-o", "figures"]]:
            print(argv[0], main(argv + ["-q"] if argv[0] != "info" else argv), flush=True)
        for name, read in (("open", obiwan_h5.open), ("Table.read", lambda p: Table.read(p, format="obiwan_h5"))):
            try:
                read(path)
            except ValueError as err:
                print(name, "refused:", err, flush=True)
""")


def test_no_reader_blocks_on_a_fifo(dr5_derived, tmp_path):
    """The file a FIFO, and a view whose data file is a FIFO: every reader refuses at once."""
    (tmp_path / "alone").mkdir()
    fifo = tmp_path / "alone" / "f.h5"
    os.mkfifo(fifo)
    (tmp_path / "view").mkdir()
    data, view = tmp_path / "view" / "derived.h5", tmp_path / "view" / "v.h5"
    data.write_bytes(open(dr5_derived, "rb").read())
    assert main(["view", str(data), "-o", str(view), "--columns", "ra,dec", "-q"]) == 0
    os.remove(data)
    os.mkfifo(data)
    run = subprocess.run([sys.executable, "-c", READ_FIFOS, str(fifo), str(view)], capture_output=True, text=True,
                         timeout=300)
    commands = ("info", "validate", "export", "view", "subset", "plot")
    lines = run.stdout.splitlines()
    assert [line for line in lines if not line.startswith(("open", "Table"))] == [
        f"{command} 2" for command in commands] * 2, run.stderr
    assert run.stdout.count("refused:") == 4 and run.stdout.count("is not a regular file (a FIFO") == 4
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 12 and all("is not a regular file (a FIFO, socket or device)" in line for line in errors)
    assert sorted(os.listdir(tmp_path / "alone")) == ["f.h5"]
    assert sorted(os.listdir(tmp_path / "view")) == ["derived.h5", "v.h5"]


def test_an_output_that_is_not_a_regular_file_is_never_replaced(dr5_derived, tmp_path, capsys):
    fifo = tmp_path / "out.fits"
    os.mkfifo(fifo)
    assert main(["export", dr5_derived, "-o", str(fifo), "--overwrite", "-q"]) == 2
    assert "exists and is not a regular file" in capsys.readouterr().err
    assert os.path.exists(fifo) and not os.path.isfile(fifo)


def test_the_primary_hdu_of_an_export_is_valid(dr5_derived, tmp_path):
    """The partial's primary HDU (written before fitsio opens the file) is a valid one."""
    output = str(tmp_path / "x.fits")
    export_fits(dr5_derived, output, columns="ra")
    with fitsio.FITS(output) as fits:
        assert fits[0].read_header()["NAXIS"] == 0 and fits[0].read_header()["EXTEND"]
        assert np.isfinite(fits["RANDOMS"].read()["ra"]).all()
