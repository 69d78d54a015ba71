"""Production safety of the derive job on one process (docs/reliability.md): every failure
stays in its brick, nothing is touched before the job is known to be runnable, the output
only ever names a complete file, resume cannot lie, inputs are checked."""

import errno
import fcntl
import os
import shutil
import signal
import stat
import time

import fitsio
import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.core import derivation
from obiwan_h5.errors import OutputError
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
        derive(DeriveOptions(dr5_production, str(output), overwrite=True, max_memory=0.001), SerialComm())
    assert output.read_bytes() == b"the old output"
    monkeypatch.delenv("OBIWAN_H5_FAIL_AT")
    assert _derive(dr5_production, output, "--overwrite") == 0
    assert h5py.is_hdf5(output)
    assert [name for name in os.listdir(tmp_path) if ".partial" in name] == []


def test_a_second_job_on_the_same_output_is_refused(dr5_production, tmp_path, capsys):
    output = tmp_path / "out.h5"
    with open(f"{output}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the first job holds it
        assert _derive(dr5_production, output) == 2
        assert "another derive job is writing it" in capsys.readouterr().err
    assert not output.exists()
    assert _derive(dr5_production, output) == 0  # released (as by a crashed job): free again
    assert not os.path.lexists(f"{output}.lock")  # and the job that took it over removed it


def _hold_the_lock_repeatedly(path, marker, rounds, results):
    """Take `path` with `output.locked` `rounds` times; inside, `marker` must not exist."""
    import time

    from obiwan_h5.job.output import locked

    overlaps = taken = 0
    while taken < rounds:
        try:
            with locked(path):
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    overlaps += 1  # another process holds the lock at the same time
                    continue
                time.sleep(0.0005)
                os.remove(marker)
                taken += 1
        except BlockingIOError:
            time.sleep(0.0001)
    results.put(overlaps)


def test_jobs_exclude_each_other_although_the_lock_file_is_removed(tmp_path):
    """Four processes take and release one lock (which removes its file) 300 times each:
    never two at once. Without the check that the locked file is still the one the path
    names, a process that opened the file just before its holder removed it locks an
    orphan while another creates and locks a new file."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    path, marker = str(tmp_path / "out.h5.lock"), str(tmp_path / "inside")
    workers = [context.Process(target=_hold_the_lock_repeatedly, args=(path, marker, 300, results))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    overlaps = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    assert overlaps == [0, 0, 0, 0]
    assert not os.path.lexists(path)


def test_side_files_never_follow_symlinks(dr5_production, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    output = tmp_path / "out.h5"
    for name in (f"{output}.creating", f"{output}.truth-index-ids.npy", f"{output}.truth-index-rows.npy"):
        os.symlink(victim, name)  # the side-file names of earlier versions
    assert _derive(dr5_production, output) == 0
    assert victim.read_text() == "precious"
    os.remove(output)
    assert not os.path.lexists(f"{output}.lock")  # removed when the job ended
    os.symlink(victim, f"{output}.lock")
    assert _derive(dr5_production, output) == 2
    assert "cannot lock the output" in capsys.readouterr().err
    assert victim.read_text() == "precious"


def test_truth_index_files_of_a_killed_job_are_removed_by_the_next_job_on_that_output(dr5_production, tmp_path):
    """A job killed (SIGKILL) while its ranks map the shared truth index leaves its files; the
    next derive to the same output removes them, and never the files of another output."""
    from obiwan_h5.job.output import new_side_file

    output = tmp_path / "out.h5"
    stale = [new_side_file(output, "truth", f"-{part}.npy") for part in ("ids", "rows")]
    others = [new_side_file(tmp_path / name, "truth", "-ids.npy") for name in ("other.h5", "out.h5.x.h5")]
    assert all(os.path.basename(path).startswith(".obiwan-h5-truth-") for path in stale + others)
    assert _derive(dr5_production, output) == 0
    assert [os.path.exists(path) for path in stale + others] == [False, False, True, True]


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
def small_disk(tmpfs):
    return tmpfs(600)


def test_a_full_disk_is_a_clear_error_before_any_write(dr5_production, small_disk, capsys):
    output = small_disk / "out.h5"
    assert _derive(dr5_production, output) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MiB needed for the output" in err[0] and "free" in err[0]
    assert os.listdir(small_disk) == []


def test_an_output_name_too_long_for_the_file_system_is_one_line(dr5_production, tmp_path, capsys):
    """A name the lock (5 more bytes) does not fit: status 2, one line, nothing left behind;
    a name that fits derives on any rank count (the partial file's name is shortened, and
    the truth index is named by a digest of the output's path, whatever its length)."""
    for length, status in ((251, 2), (254, 2), (250, 0)):
        output = tmp_path / ("x" * (length - 3) + ".h5")
        assert _derive(dr5_production, output) == status, length
        err = capsys.readouterr().err.strip().splitlines()
        if status:
            assert len(err) == 1 and "(File name too long)" in err[0], err
        assert sorted(os.listdir(tmp_path)) == ([output.name] if status == 0 else [])
        if status == 0:
            os.remove(output)


@pytest.fixture
def read_only_disk(tmpfs):
    """Holds an output, then is remounted read-only by the test."""
    return tmpfs(16 * 1024)


def test_a_read_only_file_system_is_one_line(dr5_production, read_only_disk, capsys):
    output = read_only_disk / "out.h5"
    bricks = _bricks(dr5_production)
    assert _derive(dr5_production, output, "--bricks", ",".join(bricks[:2])) == 0
    before = output.read_bytes()
    assert os.system(f"mount -o remount,ro {read_only_disk}") == 0
    capsys.readouterr()
    for extra in (["--overwrite"], ["--update", "--bricks", ",".join(bricks[:3])], ["--resume"]):
        assert _derive(dr5_production, output, *extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "output directory is not writable" in err[0], (extra, err)
    assert output.read_bytes() == before


def test_a_job_never_takes_another_outputs_partial_file(tmp_path):
    """``.a.h5.x.h5.partial-<random>`` (of output a.h5.x.h5) starts like a partial file of
    a.h5: a resume of a.h5 completed it as its own, an overwrite removed it (and so with
    the former names, ``.a.h5.x.h5.<random>.partial``)."""
    from obiwan_h5.job.output import find_partials
    from obiwan_h5.outputs import Partial

    found = {}
    for output in ("a.h5", "a.h5.x.h5"):
        partial = Partial.create(str(tmp_path / output))
        partial.release()  # as a killed job leaves it
        legacy = tmp_path / f".{output}.abcd1234.partial"
        legacy.write_text("a partial file of an earlier version")
        found[output] = sorted([partial.path, str(legacy)])
    for output, partials in found.items():
        assert sorted(find_partials(str(tmp_path / output))) == partials


class _TwoRanks:
    """Rank 1 of two, as `abort_on_unagreed_errors` sees it: `Abort` ends with its code."""

    size, rank = 2, 1

    def Abort(self, code):
        raise SystemExit(code)


@pytest.mark.parametrize("error, status", [(OutputError("x.partial: cannot write the output (no space left)"), 2),
                                           (RuntimeError("a bug"), 1)])
def test_an_unagreed_error_ends_every_rank_with_its_status(capsys, error, status):
    from obiwan_h5.job.mpi import abort_on_unagreed_errors

    with pytest.raises(SystemExit) as ended:
        with abort_on_unagreed_errors(_TwoRanks()):
            raise error
    assert ended.value.code == status
    assert f"rank 1: {type(error).__name__}: {error}; ending every rank" in capsys.readouterr().err


def test_an_error_that_follows_a_signal_is_the_signal(capsys):
    """Ctrl-C under mpiexec reaches every rank; one of them, in a write, saw the write fail
    (interrupted) and ended the job as an IO error, status 1 instead of 130."""
    from obiwan_h5.job.mpi import abort_on_unagreed_errors

    with pytest.raises(SystemExit) as ended:
        with abort_on_unagreed_errors(_TwoRanks()):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the handler runs here
            except KeyboardInterrupt:
                raise OSError(errno.EINTR, "Can't write data (Interrupted system call)") from None
    assert ended.value.code == 130
    assert "rank 1: interrupted by SIGINT (InterruptedError:" in capsys.readouterr().err


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
    assert "truth table file is not a regular file" in capsys.readouterr().err
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
    from obiwan_h5.errors import InputError, JobError

    with pytest.raises(JobError, match="`match_radius` -1.0: must be a positive number of arcsec"):
        derive(DeriveOptions(dr5_production, str(tmp_path / "x.h5"), match_radius=-1), SerialComm())
    with pytest.raises(InputError) as refused:  # `check` raises what it refuses
        DeriveOptions(dr5_production, str(tmp_path / "x.h5"), chunk_kb=-4).check()
    assert str(refused.value) == "`chunk_kb` -4: must be 0 (contiguous) or positive"
    assert not os.path.exists(tmp_path / "x.h5")
