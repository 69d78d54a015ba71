"""The bad-input matrix of `obiwan-h5 derive`: each case ends in its exact outcome.

Per-brick problems fail that brick (status 3, message naming the file and the problem)
and the job finishes the others with exit status 1; problems of the whole job are refused
before any output exists, with exit status 2 and a one-line message.
"""

import glob
import os
import shutil

import fitsio
import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.fileformat import DONE, FAILED
from obiwan_h5.production.layout import Production


@pytest.fixture
def prod(production_copy):
    layout = Production(production_copy)
    bricks = open(os.path.join(production_copy, "bricks.txt")).read().split()
    return production_copy, layout, bricks


def _derive(data_dir, output, *extra):
    return main(["derive", "--data-dir", data_dir, "-o", str(output), *extra])


def _outcome(output):
    with h5py.File(output, "r") as derived:
        names = [name.decode() for name in derived["bricks/name"][:]]
        status = dict(zip(names, derived["bricks/status"][:]))
        message = {n: m.decode() for n, m in zip(names, derived["bricks/message"][:])}
        count = dict(zip(names, derived["bricks/count"][:]))
    return status, message, count


def _rewrite(path, change):
    data = fitsio.read(path)
    fitsio.write(path, change(data), clobber=True)


def _drop_column(name):
    def change(data):
        keep = [n for n in data.dtype.names if n.lower() != name]
        return data[keep]
    return change


def _retype_column(name, dtype):
    def change(data):
        new = np.zeros(len(data), dtype=[(n, dtype if n.lower() == name else data.dtype[n]) for n in data.dtype.names])
        for field in data.dtype.names:
            new[field] = data[field]
        return new
    return change


def _set_values(name, index, value):
    def change(data):
        data[name][index] = value
        return data
    return change


# (case, how to break brick 0, words the brick's message must contain)
BRICK_CASES = [
    ("missing simcat", lambda L, b: os.remove(L.simcat(b, "rs0")), ["simcat-elg-", "file not found"]),
    ("missing sim_ids_added", lambda L, b: os.remove(L.ids_added(b, "rs1")), ["sim_ids_added.fits", "file not found"]),
    ("missing tractor", lambda L, b: os.remove(L.tractor(b, "rs1")), ["tractor-", "file not found"]),
    ("missing DR catalog", lambda L, b: os.remove(L.dr_tractor(b)), ["dr/tractor", "real DR catalog"]),
    ("non-FITS simcat", lambda L, b: open(L.simcat(b, "rs0"), "wb").write(b"not a fits file\n" * 300),
     ["simcat-elg-", "not a readable FITS"]),
    ("truncated simcat header", lambda L, b: _truncate(L.simcat(b, "rs0"), 1000), ["simcat-elg-", "not a readable FITS"]),
    ("simcat without ra", lambda L, b: _rewrite(L.simcat(b, "rs0"), _drop_column("ra")), ["simcat-elg-", "missing column(s) ra"]),
    ("simcat without flux", lambda L, b: _rewrite(L.simcat(b, "rs0"), _drop_column("gflux")), ["missing column(s) gflux"]),
    ("tractor without dec", lambda L, b: _rewrite(L.tractor(b, "rs0"), _drop_column("dec")), ["tractor-", "missing column(s) dec"]),
    ("float ids", lambda L, b: _rewrite(L.simcat(b, "rs0"), _retype_column("id", "f8")), ["id column is float64"]),
    ("tractor column of another type in one rsdir", lambda L, b: _rewrite(L.tractor(b, "rs0"), _retype_column("nobs_g", "f4")),
     ["tractor_nobs_g is int16 in some rsdirs", "float32"]),
    ("tractor column of another type", lambda L, b: [_rewrite(L.tractor(b, r), _retype_column("nobs_g", "f4"))
                                                     for r in ("rs0", "rs1")],
     ["columns differ from earlier bricks", "tractor_nobs_g"]),
    ("duplicate ids", lambda L, b: _rewrite(L.ids_added(b, "rs0"), lambda d: np.concatenate([d, d[:2]])),
     ["rs0", "duplicate id"]),
    ("id absent from simcat", lambda L, b: _rewrite(L.ids_added(b, "rs0"), _set_values("id", 0, 10**15)),
     ["rs0", "not in the simcat"]),
    ("NaN injected position", lambda L, b: _rewrite(L.simcat(b, "rs1"), _set_values("ra", 3, np.nan)),
     ["simcat-elg-", "non-finite ra/dec"]),
    ("infinite injected position", lambda L, b: _rewrite(L.simcat(b, "rs1"), _set_values("dec", 0, np.inf)),
     ["non-finite ra/dec"]),
    ("no rsdir at all", lambda L, b: (shutil.rmtree(L.obiwan_dir(b)), shutil.rmtree(os.path.dirname(L.tractor_dir(b, "rs0")))),
     ["no rsdir under"]),
]


def _truncate(path, size):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:size])


@pytest.mark.parametrize("case, damage, words", BRICK_CASES, ids=[case[0] for case in BRICK_CASES])
def test_brick_failure(prod, tmp_path, case, damage, words):
    data_dir, layout, bricks = prod
    # the failing brick is the first: its columns come first in the schema union
    victim = bricks[0] if case != "tractor column of another type" else bricks[-1]
    damage(layout, victim)
    output = tmp_path / "out.h5"
    assert _derive(data_dir, output) == 1
    status, message, count = _outcome(output)
    assert status[victim] == FAILED and count[victim] == 0
    for word in words:
        assert word in message[victim], (word, message[victim])
    assert all(status[b] == DONE for b in bricks if b != victim)


def test_id_missing_from_truth_table(prod, tmp_path):
    data_dir, layout, bricks = prod
    simcat_id = fitsio.read(layout.ids_added(bricks[2], "rs0"))["id"][0]
    _rewrite(os.path.join(data_dir, "randoms.fits"), lambda d: d[d["id"] != simcat_id])
    output = tmp_path / "out.h5"
    assert _derive(data_dir, output) == 1
    status, message, _ = _outcome(output)
    assert status[bricks[2]] == FAILED and "not in the randoms truth table" in message[bricks[2]]
    assert str(simcat_id) in message[bricks[2]]


def test_empty_tractor_catalog_and_zero_injected_sources(prod, tmp_path):
    data_dir, layout, bricks = prod
    _rewrite(layout.tractor(bricks[0], "rs0"), lambda d: d[:0])
    _rewrite(layout.ids_added(bricks[1], "rs0"), lambda d: d[:0])
    _rewrite(layout.ids_added(bricks[1], "rs1"), lambda d: d[:0])
    output = tmp_path / "out.h5"
    assert _derive(data_dir, output) == 0
    status, _, count = _outcome(output)
    assert status[bricks[0]] == DONE and status[bricks[1]] == DONE and count[bricks[1]] == 0
    with h5py.File(output, "r") as derived:
        first = slice(0, derived["bricks/count"][0])
        mask = derived["randoms/obiwan_mask"][first]
        rsdir = derived["randoms/rsdir"][first]
        assert not np.any(mask[rsdir == b"rs0"] & 1) and np.any(mask[rsdir == b"rs1"] & 1)
        assert derived["summary/n_inj"][1] == 0 and np.isnan(derived["summary/frac_recovered"][1])


def test_brick_not_on_the_grid_fails_alone(prod, tmp_path):
    data_dir, _, bricks = prod
    listing = tmp_path / "bricks.txt"
    listing.write_text("\n".join(bricks + ["9999p999", bricks[0]]) + "\n")  # plus a duplicate
    output = tmp_path / "out.h5"
    assert _derive(data_dir, output, "--bricks", str(listing)) == 1
    status, message, _ = _outcome(output)
    assert list(status) == sorted(set(bricks + ["9999p999"]))
    assert status["9999p999"] == FAILED and "not in survey-bricks" in message["9999p999"]


def test_many_bricks_failing_alike_are_counted_not_listed(prod, tmp_path, caplog):
    """A brick list of another production fails every brick for one reason: the log names
    the first few and counts the others in one line; the file holds every one."""
    from obiwan_h5.job.report import LOGGED_PER_REASON

    data_dir, _, bricks = prod
    absent = [f"{ra:04d}p{dec:03d}" for ra in range(3000, 3025) for dec in (800, 801)]
    listing = tmp_path / "bricks.txt"
    listing.write_text("\n".join(bricks + absent) + "\n")
    output = tmp_path / "out.h5"
    with caplog.at_level("WARNING", logger="obiwan_h5"):
        assert _derive(data_dir, output, "--bricks", str(listing)) == 1
    lines = [record.getMessage() for record in caplog.records if "not in survey-bricks" in record.getMessage()]
    assert len(lines) == LOGGED_PER_REASON + 1
    assert lines[-1] == (f"... and {len(absent) - LOGGED_PER_REASON} more bricks failed: not in survey-bricks "
                         "(listed in the file's bricks/message)")
    status, message, _ = _outcome(output)
    assert sum(status[name] == FAILED for name in absent) == len(absent)


@pytest.mark.parametrize("line", ["../../etc/passwd", "1741p24", "1741x242", "1741p242; rm -rf /", "0000p000/.."])
def test_brick_names_that_are_not_bricks_refuse_the_job(prod, tmp_path, capsys, line):
    data_dir, _, bricks = prod
    listing = tmp_path / "bricks.txt"
    listing.write_text(f"{bricks[0]}\n{line}\n")
    output = tmp_path / "out.h5"
    assert _derive(data_dir, output, "--bricks", str(listing)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bricks.txt:2" in err[0] and "not a brick name" in err[0]
    assert not output.exists() and not os.path.exists(f"{output}.creating")


def test_whole_job_refusals(prod, tmp_path, capsys):
    data_dir, _, _ = prod
    cases = [
        (["-o", str(tmp_path / "missing-dir" / "out.h5")], "output directory does not exist"),
        (["-o", str(tmp_path / "out.h5"), "--randoms", str(tmp_path / "nope.fits")], "nope.fits: truth table file not found"),
        (["-o", str(tmp_path / "out.h5"), "--bricks", str(tmp_path / "nope.txt")], "nope.txt: brick-list file not found"),
        (["-o", str(tmp_path / "out.h5"), "--survey-bricks", os.path.join(data_dir, "bricks.txt")],
         "not a readable FITS"),
    ]
    for extra, words in cases:
        status = main(["derive", "--data-dir", data_dir, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and words in err[0], (extra, err)
    assert not (tmp_path / "out.h5").exists()
    (tmp_path / "existing.h5").write_bytes(b"keep me")
    assert _derive(data_dir, tmp_path / "existing.h5") == 2
    assert (tmp_path / "existing.h5").read_bytes() == b"keep me"


def test_inputs_read_whole_are_refused_before_anything_when_missing_or_not_regular(prod, tmp_path, capsys):
    """The data and DR directories, truth table, survey-bricks and brick-list files: a
    missing one is named as what it is, a FIFO or device is refused without being opened."""
    data_dir, _, _ = prod
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        (["--data-dir", str(tmp_path / "productin")], "productin: no such data directory (--data-dir)"),
        (["--data-dir", str(fifo)], "fifo: is not a directory (--data-dir"),
        (["--data-dir", data_dir, "--dr-dir", str(tmp_path / "nodr")], "nodr: no such DR directory (--dr-dir)"),
        (["--data-dir", data_dir, "--dr-dir", str(fifo)], "fifo: is not a directory (--dr-dir"),
        (["--data-dir", data_dir, "--randoms", str(fifo)], "fifo: truth table file is not a regular file"),
        (["--data-dir", data_dir, "--survey-bricks", "/dev/null"], "/dev/null: survey-bricks file is not a regular file"),
        (["--data-dir", data_dir, "--bricks", str(fifo)], "fifo: brick-list file is not a regular file"),
    ]
    for extra, words in cases:
        status = main(["derive", "-o", str(tmp_path / "out.h5"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and words in err[0], (extra, err)
    assert not (tmp_path / "out.h5").exists() and not glob.glob(str(tmp_path / ".out.h5*"))


def test_resume_against_other_inputs_names_the_difference(prod, dr5_production, tmp_path, capsys):
    data_dir, _, bricks = prod
    output = tmp_path / "out.h5"
    assert _derive(dr5_production, output) == 0
    assert _derive(data_dir, output, "--resume") == 2
    assert "made with data_dir=" in capsys.readouterr().err
    assert _derive(dr5_production, output, "--resume", "--expect-rsdirs", "3") == 2
    assert "expect_rsdirs" in capsys.readouterr().err
