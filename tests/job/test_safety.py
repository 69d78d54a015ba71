"""Production safety of the derive job on one process (docs/reliability.md): every failure
stays in its brick, nothing is touched before the job is known to be runnable, the output
only ever names a complete file, resume cannot lie, inputs are checked."""

import fcntl
import os
import shutil
import stat

import fitsio
import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.core import derivation
from obiwan_h5.fileformat import DONE, FAILED
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.production.layout import Production, sort_rsdirs
from obiwan_h5.sim.simulate import to_dr3


def _derive(data_dir, output, *extra):
    return main(["derive", "--data-dir", str(data_dir), "-o", str(output), *extra])


def _bricks(data_dir):
    return open(os.path.join(data_dir, "bricks.txt")).read().split()


def _outcome(output):
    with h5py.File(output, "r") as derived:
        names = [name.decode() for name in derived["bricks/name"][:]]
        return (dict(zip(names, derived["bricks/status"][:])),
                {n: m.decode() for n, m in zip(names, derived["bricks/message"][:])})


def _datasets(path):
    with h5py.File(path, "r") as derived:
        return {f"{group}/{name}": derived[group][name][:] for group in ("randoms", "summary")
                for name in derived[group]}


def _assert_equal_files(a, b):
    first, second = _datasets(a), _datasets(b)
    assert sorted(first) == sorted(second)
    for name, values in first.items():
        assert np.array_equal(values, second[name], equal_nan=values.dtype.kind == "f"), name


# ------------------------------------------------------------------ 1. per-brick isolation

def test_unexpected_errors_fail_their_brick_only(production_copy, tmp_path, monkeypatch, capsys):
    layout, bricks = Production(production_copy), _bricks(production_copy)
    # a brick directory that is a file, an rsdir that is a symlink loop, a bug in one brick
    shutil.rmtree(layout.obiwan_dir(bricks[0]))
    open(layout.obiwan_dir(bricks[0]), "w").write("not a directory")
    loop = layout.obiwan_dir(bricks[1], "rs1")
    shutil.rmtree(loop)
    os.symlink(loop, loop)
    real = derivation.derive_rows

    def buggy(pieces, *args, **kwargs):
        if any(piece.brickname == bricks[2] for piece in pieces):
            raise ZeroDivisionError("division by zero in a new feature")
        return real(pieces, *args, **kwargs)

    monkeypatch.setattr("obiwan_h5.job.compute.derive_rows", buggy)
    output = tmp_path / "out.h5"
    assert _derive(production_copy, output) == 1
    status, message = _outcome(output)
    assert status[bricks[0]] == FAILED and "NotADirectoryError" in message[bricks[0]]
    assert status[bricks[1]] == FAILED and "cannot read file" in message[bricks[1]]
    assert status[bricks[2]] == FAILED and message[bricks[2]] == "ZeroDivisionError: division by zero in a new feature"
    assert all(status[name] == DONE for name in bricks[3:])
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("step", ["selection", "summary"])
def test_a_round_level_failure_fails_only_the_brick_at_fault(production_copy, dr5_derived, tmp_path, monkeypatch, step):
    """Selections and summaries run once per write round; when the round's call fails, the
    bricks are redone one by one: the brick at fault fails, the others equal a clean run."""
    from obiwan_h5.job import compute

    victim = _bricks(production_copy)[2]
    victim_marker = f"_{victim}_".encode()

    def has_victim(columns):
        return any(victim_marker in value for value in columns["unique_id"])

    if step == "selection":
        from obiwan_h5.core import derivation

        real = derivation.targets_bits

        def buggy(columns, *args, **kwargs):
            if has_victim(columns):
                raise FloatingPointError("a cut that blew up")
            return real(columns, *args, **kwargs)

        monkeypatch.setattr(derivation, "targets_bits", buggy)
    else:
        real = compute.summarise_brick

        def buggy_one(name, columns, bounds, nobjs):
            if name == victim:
                raise FloatingPointError("a statistic that blew up")
            return real(name, columns, bounds, nobjs)

        def buggy_round(*args):
            raise FloatingPointError("the round's summaries")

        monkeypatch.setattr(compute, "summarise_bricks", buggy_round)
        monkeypatch.setattr(compute, "summarise_brick", buggy_one)
    output = tmp_path / "out.h5"
    assert _derive(production_copy, output) == 1
    status, message = _outcome(output)
    assert status[victim] == FAILED and message[victim].startswith("FloatingPointError: a ")
    assert all(status[name] == DONE for name in _bricks(production_copy) if name != victim)
    # same production, same plan: the done bricks' rows and summary rows equal the clean file's
    with h5py.File(output, "r") as derived:
        done = derived["bricks/status"][:] == DONE
        keep = {"randoms": np.repeat(done, derived["bricks/count"][:]), "summary": done}
    clean = _datasets(dr5_derived)
    for name, values in _datasets(output).items():
        rows = keep[name.split("/")[0]]
        assert np.array_equal(values[rows], clean[name][rows], equal_nan=values.dtype.kind == "f"), name


# ------------------------------------------------------------ 2. validate before touching

def test_bad_options_and_outputs_are_refused_before_anything_is_touched(production_copy, tmp_path, capsys):
    randoms = os.path.join(production_copy, "randoms.fits")
    before = open(randoms, "rb").read()
    existing = tmp_path / "old.h5"
    existing.write_bytes(b"the old output")
    cases = [
        ([str(existing), "--overwrite", "--match-radius", "0"], "--match-radius 0.0: must be a positive"),
        ([str(existing), "--overwrite", "--match-radius", "nan"], "--match-radius nan"),
        ([str(existing), "--overwrite", "--max-memory", "-1"], "--max-memory -1"),
        ([str(tmp_path), "--overwrite"], "is a directory"),
        ([randoms, "--overwrite"], "is an input of the job"),
        ([os.path.join(production_copy, "tractor", "out.h5"), "--overwrite"], "inside the production's catalogs"),
        ([str(existing), "--overwrite", "--resume"], "exclude each other"),
    ]
    for (output, *extra), words in cases:
        assert _derive(production_copy, output, *extra) == 2, words
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (words, err)
    assert open(randoms, "rb").read() == before
    assert existing.read_bytes() == b"the old output"
    assert sorted(name for name in os.listdir(tmp_path) if name != "production") == ["old.h5"]


# -------------------------------------------------------------- 3. atomic output and lock

def test_overwrite_keeps_the_old_file_until_the_new_one_is_complete(dr5_production, tmp_path, monkeypatch):
    output = tmp_path / "out.h5"
    output.write_bytes(b"the old output")
    monkeypatch.setenv("OBIWAN_H5_FAIL_AT", "write:0")
    with pytest.raises(RuntimeError, match="injected fault"):
        derive(DeriveOptions(dr5_production, str(output), overwrite=True, max_memory_mb=0.001), SerialComm())
    assert output.read_bytes() == b"the old output"
    monkeypatch.delenv("OBIWAN_H5_FAIL_AT")
    assert _derive(dr5_production, output, "--overwrite") == 0
    assert h5py.is_hdf5(output)
    assert [name for name in os.listdir(tmp_path) if name.endswith(".partial")] == []


def test_a_second_job_on_the_same_output_is_refused(dr5_production, tmp_path, capsys):
    output = tmp_path / "out.h5"
    with open(f"{output}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the first job holds it
        assert _derive(dr5_production, output) == 2
        assert "another derive job is writing it" in capsys.readouterr().err
    assert not output.exists()
    assert _derive(dr5_production, output) == 0  # released (as by a crashed job): free again


def test_side_files_never_follow_symlinks(dr5_production, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    output = tmp_path / "out.h5"
    for name in (f"{output}.creating", f"{output}.truth-index-ids.npy", f"{output}.truth-index-rows.npy"):
        os.symlink(victim, name)  # the side-file names of earlier versions
    assert _derive(dr5_production, output) == 0
    assert victim.read_text() == "precious"
    os.remove(output)
    os.remove(f"{output}.lock")
    os.symlink(victim, f"{output}.lock")
    assert _derive(dr5_production, output) == 2
    assert "cannot lock the output" in capsys.readouterr().err
    assert victim.read_text() == "precious"


# ---------------------------------------------------------------- 4. resume cannot lie

def test_resume_refuses_a_plan_with_other_column_widths(production_copy, tmp_path, capsys):
    output = tmp_path / "out.h5"
    assert _derive(production_copy, output) == 0
    layout, brick = Production(production_copy), _bricks(production_copy)[1]
    path = layout.tractor(brick, "rs0")
    data = fitsio.read(path)
    wider = np.zeros(len(data), dtype=[(n, "S12" if n.lower() == "type" else data.dtype[n]) for n in data.dtype.names])
    for name in data.dtype.names:
        wider[name] = data[name]
    wider["TYPE" if "TYPE" in data.dtype.names else "type"][:] = b"SIMP_LONGER"
    fitsio.write(path, wider, clobber=True)
    with h5py.File(output, "r+") as derived:
        derived["bricks/status"][1] = 0  # pending, so that there is something to resume
    assert _derive(production_copy, output, "--resume") == 2
    err = capsys.readouterr().err
    assert "column tractor_type is |S" in err and "cannot resume" in err


def test_resume_derives_again_a_done_brick_whose_inputs_changed(production_copy, tmp_path):
    output = tmp_path / "out.h5"
    assert _derive(production_copy, output) == 0
    layout, bricks = Production(production_copy), _bricks(production_copy)
    with h5py.File(output, "r+") as derived:
        derived["bricks/status"][0] = 0  # an interrupted job: brick 0 not done
    changed = layout.tractor(bricks[2], "rs1")
    data = fitsio.read(changed)
    flux = "FLUX_G" if "FLUX_G" in data.dtype.names else "flux_g"
    data[flux] *= 2  # a rerun of this brick's Tractor
    fitsio.write(changed, data, clobber=True)
    assert _derive(production_copy, output, "--resume") == 0
    fresh = tmp_path / "fresh.h5"
    assert _derive(production_copy, fresh) == 0
    _assert_equal_files(output, fresh)


# --------------------------------------------------------------------- 5. mixed schemas

def test_a_production_mixing_dr3_and_dr5_catalogs_is_refused(production_copy, tmp_path, capsys):
    layout, brick = Production(production_copy), _bricks(production_copy)[3]
    for rsdir in layout.rsdirs(brick):
        path = layout.tractor(brick, rsdir)
        fitsio.write(path, to_dr3(fitsio.read(path, lower=True)), clobber=True)
    output = tmp_path / "out.h5"
    assert _derive(production_copy, output) == 2
    err = capsys.readouterr().err
    assert "mix the DR3 schema" in err and brick in err
    assert not output.exists() and [n for n in os.listdir(tmp_path) if "partial" in n] == []


# ----------------------------------------------------------------- 6. disk full (tmpfs)

@pytest.fixture
def small_disk(tmp_path):
    """A tiny tmpfs of our own (needs root, as in CI), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=600k tmpfs {mount} 2>/dev/null") != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    yield mount
    os.system(f"umount {mount}")


def test_a_full_disk_is_a_clear_error_before_any_write(dr5_production, small_disk, capsys):
    output = small_disk / "out.h5"
    assert _derive(dr5_production, output) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MiB needed for the output" in err[0] and "free" in err[0]
    assert sorted(os.listdir(small_disk)) == ["out.h5.lock"]


# ------------------------------------------------------------------- 9. input hygiene

@pytest.mark.parametrize("name, words", [("١٢٣٤p567", "is not a brick name"), ("1234p56７", "is not a brick name")])
def test_brick_names_are_ascii(dr5_production, tmp_path, capsys, name, words):
    listing = tmp_path / "bricks.txt"
    listing.write_text(name + "\n", encoding="utf-8")
    assert _derive(dr5_production, tmp_path / "out.h5", "--bricks", str(listing)) == 2
    assert words in capsys.readouterr().err


def test_a_latin1_brick_list_is_a_clear_error(dr5_production, tmp_path, capsys):
    listing = tmp_path / "bricks.txt"
    listing.write_bytes("# brique près du pôle\n0001p000\n".encode("latin-1"))
    assert _derive(dr5_production, tmp_path / "out.h5", "--bricks", str(listing)) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_a_fifo_is_refused_without_blocking(production_copy, tmp_path, capsys):
    layout, brick = Production(production_copy), _bricks(production_copy)[0]
    os.remove(layout.simcat(brick, "rs0"))
    os.mkfifo(layout.simcat(brick, "rs0"))
    fifo_truth = tmp_path / "randoms.fits"
    os.mkfifo(fifo_truth)
    assert _derive(production_copy, tmp_path / "a.h5", "--randoms", str(fifo_truth)) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert _derive(production_copy, tmp_path / "b.h5") == 1
    status, message = _outcome(tmp_path / "b.h5")
    assert status[brick] == FAILED and "not a regular file" in message[brick]
    assert stat.S_ISFIFO(os.stat(layout.simcat(brick, "rs0")).st_mode)


def _truth_variants(production, tmp_path):
    data = fitsio.read(os.path.join(production, "randoms.fits"))
    floats = np.zeros(len(data), dtype=[(n, "f8" if n.lower() == "id" else data.dtype[n]) for n in data.dtype.names])
    unsigned = np.zeros(len(data), dtype=[(n, "u8" if n.lower() == "id" else data.dtype[n]) for n in data.dtype.names])
    for name in data.dtype.names:
        floats[name] = data[name]
        unsigned[name] = data[name]
    unsigned[unsigned.dtype.names[0]][0] = 2 ** 63 + 5
    variants = {"float ids": (floats, "is float64, expected integers"),
                "uint64 ids": (unsigned, "2**63 or more"),
                "no rows": (data[:0], "has no rows")}
    paths = {}
    for label, (table, words) in variants.items():
        path = tmp_path / f"{label.replace(' ', '-')}.fits"
        fitsio.write(path, table, clobber=True)
        paths[label] = (path, words)
    ragged = tmp_path / "ragged.h5"
    with h5py.File(ragged, "w") as handle:
        handle["id"] = np.arange(10)
        handle["g"] = np.ones(9)
    paths["ragged"] = (ragged, "differ in length")
    return paths


def test_bad_truth_tables_are_refused_clearly(dr5_production, tmp_path, capsys):
    for label, (path, words) in _truth_variants(dr5_production, tmp_path).items():
        assert _derive(dr5_production, tmp_path / "out.h5", "--randoms", str(path)) == 2, label
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (label, err)


def test_simcat_columns_cannot_overwrite_derived_ones(production_copy, tmp_path):
    layout, brick = Production(production_copy), _bricks(production_copy)[0]
    path = layout.simcat(brick, "rs1")
    data = fitsio.read(path)
    extended = np.zeros(len(data), dtype=data.dtype.descr + [("brickname", "S8")])
    for name in data.dtype.names:
        extended[name] = data[name]
    fitsio.write(path, extended, clobber=True)
    assert _derive(production_copy, tmp_path / "out.h5") == 1
    status, message = _outcome(tmp_path / "out.h5")
    assert status[brick] == FAILED and "simcat column(s) brickname would" in message[brick]


def test_rsdir_order_is_total():
    names = ["rs1", "rs01", "skip_rs0", "rs10", "rs001"]
    assert sort_rsdirs(names) == sort_rsdirs(list(reversed(names))) == ["rs001", "rs01", "rs1", "rs10", "skip_rs0"]


def test_library_refuses_bad_options_naming_the_parameter(dr5_production, tmp_path):
    with pytest.raises(Exception, match="`match_radius` -1.0"):
        derive(DeriveOptions(dr5_production, str(tmp_path / "x.h5"), match_radius=-1), SerialComm())
    assert DeriveOptions(dr5_production, str(tmp_path / "x.h5"), chunk_kb=-4).check() == "`chunk_kb` -4: must be 0 " \
        "(contiguous) or positive"
    assert not os.path.exists(tmp_path / "x.h5")
