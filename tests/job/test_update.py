"""`derive --update` (docs/derive.md): only new and changed bricks are derived, the rest copied;
the result equals a fresh derive of the new brick list, dataset by dataset."""

import hashlib
import json
import os
import shutil
import stat

import fitsio
import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.production.layout import Production
from obiwan_h5.read.info import describe, format_text


@pytest.fixture
def grown(production_copy, tmp_path):
    """The production with its first five bricks derived (the 'old' file) and a brick list
    of all six (the production grown by one brick)."""
    bricks = open(os.path.join(production_copy, "bricks.txt")).read().split()
    old_list, new_list = tmp_path / "old.txt", tmp_path / "new.txt"
    old_list.write_text("\n".join(bricks[:5]) + "\n")
    new_list.write_text("\n".join(bricks) + "\n")
    output = tmp_path / "derived.h5"
    assert _derive(production_copy, output, "--bricks", old_list) == 0
    return production_copy, output, bricks, old_list, new_list


def _derive(data_dir, output, *extra):
    return main(["derive", "--data-dir", str(data_dir), "-o", str(output), *[str(item) for item in extra]])


def _assert_same(path, reference):
    with h5py.File(path, "r") as got, h5py.File(reference, "r") as want:
        for group in ("randoms", "summary", "bricks"):
            assert sorted(got[group]) == sorted(want[group]), group
            assert got[group].attrs.get("column_order") == want[group].attrs.get("column_order")
            for name in want[group]:
                a, b = got[group][name], want[group][name]
                assert a.dtype == b.dtype and a.shape == b.shape, f"{group}/{name}"
                assert np.array_equal(a[:], b[:], equal_nan=a.dtype.kind == "f"), f"{group}/{name}"


def _fresh(data_dir, listing, tmp_path):
    reference = tmp_path / "fresh.h5"
    if reference.exists():
        reference.unlink()
    assert _derive(data_dir, reference, "--bricks", listing) == 0
    return reference


def _history(path):
    with h5py.File(path, "r") as derived:
        return json.loads(derived.attrs["update_history"])


def test_added_bricks_are_derived_and_the_rest_copied(grown, tmp_path, monkeypatch):
    data_dir, output, bricks, _, new_list = grown
    derived_bricks = []
    real = __import__("obiwan_h5.job.compute", fromlist=["derive_rows"]).derive_rows

    def spy(pieces, *args, **kwargs):
        derived_bricks.extend(dict.fromkeys(piece.brickname for piece in pieces))
        return real(pieces, *args, **kwargs)

    monkeypatch.setattr("obiwan_h5.job.compute.derive_rows", spy)
    assert _derive(data_dir, output, "--bricks", new_list, "--update") == 0
    assert derived_bricks == [bricks[5]]
    monkeypatch.undo()
    _assert_same(output, _fresh(data_dir, new_list, tmp_path))
    (entry,) = _history(output)
    assert (entry["added"], entry["rederived"], entry["copied"], entry["removed"]) == (1, 0, 5, 0)
    assert "last updated" in format_text(describe(str(output)))


def test_a_changed_brick_is_derived_again(grown, tmp_path):
    data_dir, output, bricks, old_list, _ = grown
    path = Production(data_dir).tractor(bricks[1], "rs0")
    data = fitsio.read(path)
    flux = "FLUX_G" if "FLUX_G" in data.dtype.names else "flux_g"
    data[flux] *= 3
    fitsio.write(path, data, clobber=True)
    assert _derive(data_dir, output, "--bricks", old_list, "--update") == 0
    _assert_same(output, _fresh(data_dir, old_list, tmp_path))
    (entry,) = _history(output)
    assert (entry["added"], entry["rederived"], entry["copied"]) == (0, 1, 4)


def test_a_removed_brick_is_dropped(grown, tmp_path):
    data_dir, output, bricks, _, _ = grown
    fewer = tmp_path / "fewer.txt"
    fewer.write_text("\n".join(bricks[:2] + bricks[3:5]) + "\n")
    assert _derive(data_dir, output, "--bricks", fewer, "--update") == 0
    _assert_same(output, _fresh(data_dir, fewer, tmp_path))
    assert _history(output)[-1]["removed"] == 1


def test_an_update_with_nothing_to_do_leaves_the_file_as_it_was(grown):
    data_dir, output, _, old_list, _ = grown
    before = hashlib.sha256(output.read_bytes()).hexdigest(), os.stat(output).st_mtime_ns
    assert _derive(data_dir, output, "--bricks", old_list, "--update") == 0
    assert (hashlib.sha256(output.read_bytes()).hexdigest(), os.stat(output).st_mtime_ns) == before


@pytest.mark.parametrize("extra, words", [(["--match-radius", "2"], "match_radius_arcsec"),
                                          (["--keep-all-apflux"], "keep_all_apflux")])
def test_options_that_change_every_brick_are_refused(grown, capsys, extra, words):
    data_dir, output, _, _, new_list = grown
    before = output.read_bytes()
    assert _derive(data_dir, output, "--bricks", new_list, "--update", *extra) == 2
    err = capsys.readouterr().err
    assert words in err and "derive afresh with --overwrite" in err
    assert output.read_bytes() == before


def test_an_update_needs_a_complete_file(dr5_production, tmp_path, capsys):
    assert _derive(dr5_production, tmp_path / "none.h5", "--update") == 2
    assert "no file to update" in capsys.readouterr().err


def test_a_crashed_update_leaves_the_old_file_and_a_retry_completes(grown, tmp_path, monkeypatch):
    data_dir, output, _, _, new_list = grown
    before = output.read_bytes()
    monkeypatch.setenv("OBIWAN_H5_FAIL_AT", "write:1")
    with pytest.raises(RuntimeError, match="injected fault"):
        derive(DeriveOptions(data_dir, str(output), bricks=str(new_list), update=True, max_memory=0.001),
               SerialComm())
    assert output.read_bytes() == before  # the old file is whole
    # nothing to resume: the failed update removed its partial file
    assert [name for name in os.listdir(tmp_path) if ".partial" in name] == []
    monkeypatch.delenv("OBIWAN_H5_FAIL_AT")
    assert _derive(data_dir, output, "--bricks", new_list, "--update") == 0
    _assert_same(output, _fresh(data_dir, new_list, tmp_path))
    assert [name for name in os.listdir(tmp_path) if ".partial" in name] == []


def test_verify_inputs_sees_a_change_that_keeps_size_and_mtime(grown, tmp_path):
    data_dir, output, bricks, old_list, _ = grown
    assert _derive(data_dir, output, "--bricks", old_list, "--overwrite", "--verify-inputs") == 0
    path = Production(data_dir).tractor(bricks[2], "rs1")
    stats = os.stat(path)
    data = bytearray(open(path, "rb").read())
    data[-10] ^= 0xFF  # a flipped byte in the data area: same size
    open(path, "wb").write(bytes(data))
    os.utime(path, ns=(stats.st_atime_ns, stats.st_mtime_ns))  # and the same mtime
    assert _derive(data_dir, output, "--bricks", old_list, "--update", "--verify-inputs") == 0
    assert _history(output)[-1]["rederived"] == 1
    shutil.copy(output, tmp_path / "kept.h5")


def _without_dataset(path, name):
    with h5py.File(path, "r+") as derived:
        del derived[name]


def _narrower(path, name, dtype):
    with h5py.File(path, "r+") as derived:
        values = derived[name][:]
        del derived[name]
        derived[name] = values.astype(dtype)


def _subset(path, columns):
    source = f"{path}.source.h5"
    os.replace(path, source)
    assert main(["subset", source, "-o", str(path), "--columns", columns]) == 0


def _view(path, columns):
    source = f"{path}.source.h5"
    os.replace(path, source)
    assert main(["view", source, "-o", str(path), "--columns", columns]) == 0


@pytest.mark.parametrize("damage, words", [
    (lambda path: _subset(path, "unique_id,ra,dec"), "randoms/brickname is missing (and"),
    (lambda path: _without_dataset(path, "randoms/psql_g"), "randoms/psql_g is missing:"),
    (lambda path: _view(path, "*"), "is not data of this file (a view links to another file's)"),
    (lambda path: _narrower(path, "randoms/psql_g", "f4"), "randoms/psql_g is float32, a derive of these bricks float64"),
    (lambda path: _without_dataset(path, "bricks/fingerprint"), "bricks/fingerprint is missing"),
], ids=["subset", "removed column", "view", "narrower dtype", "no fingerprints"])
def test_a_file_not_laid_out_as_derive_writes_it_is_refused(grown, tmp_path, capsys, damage, words):
    """Copied bricks are copied column by column from the old file: from a file without
    some columns they were filled with fill values (and marked done). Any file whose
    datasets are not those a derive of its bricks writes is refused, before anything."""
    data_dir, output, _, _, new_list = grown
    damage(output)
    before = output.read_bytes()
    capsys.readouterr()
    assert _derive(data_dir, output, "--bricks", new_list, "--update") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "derive afresh with --overwrite" in err[0], err
    assert output.read_bytes() == before
    assert [name for name in os.listdir(tmp_path) if ".partial" in name] == []


def _rewrite_truth(data_dir, change, keep_stat=False):
    path = os.path.join(data_dir, "randoms.fits")
    stats = os.stat(path)
    data = fitsio.read(path)
    change(data)
    fitsio.write(path, data, clobber=True)
    if keep_stat:
        assert os.path.getsize(path) == stats.st_size
        os.utime(path, ns=(stats.st_atime_ns, stats.st_mtime_ns))


@pytest.mark.parametrize("verify", [False, True], ids=["stat", "content"])
def test_a_changed_truth_table_is_refused(grown, capsys, verify):
    """Same path, new values: the copied bricks would keep stale psql_* values. With
    `--verify-inputs` even a change that keeps the file's size and mtime is seen."""
    data_dir, output, bricks, old_list, new_list = grown
    extra = ["--verify-inputs"] if verify else []
    if verify:
        assert _derive(data_dir, output, "--bricks", old_list, "--overwrite", *extra) == 0

    def brighter(data):
        data["g"][:] -= 0.5

    _rewrite_truth(data_dir, brighter, keep_stat=verify)
    before = output.read_bytes()
    capsys.readouterr()
    assert _derive(data_dir, output, "--bricks", new_list, "--update", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    words = "CRC-32" if verify else "modified"
    assert len(err) == 1 and f"the truth table changed since the file was written ({words}" in err[0], err
    assert output.read_bytes() == before


def test_resume_refuses_a_changed_truth_table_too(grown, capsys):
    data_dir, output, _, old_list, _ = grown
    with h5py.File(output, "r+") as derived:
        derived["bricks/status"][0] = 0  # an interrupted job: something to resume

    def brighter(data):
        data["g"][:] -= 0.5

    _rewrite_truth(data_dir, brighter)
    assert _derive(data_dir, output, "--bricks", old_list, "--resume") == 2
    err = capsys.readouterr().err
    assert "the truth table changed since the file was written" in err and "cannot resume" in err


def test_an_update_keeps_the_file_mode_and_refuses_a_read_only_file(grown, capsys):
    data_dir, output, _, old_list, new_list = grown
    os.chmod(output, 0o664)
    assert _derive(data_dir, output, "--bricks", new_list, "--update") == 0
    assert stat.S_IMODE(os.stat(output).st_mode) == 0o664  # the replaced file had 0644
    os.chmod(output, 0o444)
    before = output.read_bytes()
    capsys.readouterr()
    assert _derive(data_dir, output, "--bricks", old_list, "--update") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is read-only, and an update replaces it" in err[0], err
    assert output.read_bytes() == before and stat.S_IMODE(os.stat(output).st_mode) == 0o444


def test_unchanged_bricks_are_recognised_without_opening_their_files(grown, tmp_path, monkeypatch):
    """An update opens no file of a brick whose inputs kept their size and modification
    time, but the first brick's headers (the union of schemas starts from it); the file
    still equals a fresh derive."""
    import obiwan_h5.production.inputs as inputs

    data_dir, output, bricks, _, new_list = grown
    path = Production(data_dir).tractor(bricks[3], "rs0")
    fitsio.write(path, fitsio.read(path), clobber=True)  # rerun: a new file, the same rows
    opened = []
    real_open = inputs.open_input

    def spy(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(inputs, "open_input", spy)
    assert _derive(data_dir, output, "--bricks", new_list, "--update") == 0
    monkeypatch.undo()
    by_brick = {brick: [name for name in opened if f"/{brick}/" in name or f"-{brick}." in name] for brick in bricks}
    assert all(by_brick[brick] for brick in (bricks[3], bricks[5]))  # changed and new: scanned and derived
    assert by_brick[bricks[1]] == by_brick[bricks[2]] == by_brick[bricks[4]] == []
    assert sorted(os.path.basename(name) for name in by_brick[bricks[0]]) == sorted(
        [f"simcat-elg-{bricks[0]}.fits", f"tractor-{bricks[0]}.fits"] * 2)  # headers of its two rsdirs
    _assert_same(output, _fresh(data_dir, new_list, tmp_path))
    (entry,) = _history(output)
    assert (entry["added"], entry["rederived"], entry["copied"]) == (1, 1, 4)


def test_an_update_scans_unchanged_bricks_when_the_old_columns_cannot_tell_their_schema(production_copy, tmp_path):
    """The old file's columns are the union over its bricks: when the brick that brought a
    column is removed, the unchanged bricks' schema is not the old file's, so they are scanned
    (their headers read) and the file equals a fresh derive of the new list."""
    layout = Production(production_copy)
    bricks = open(os.path.join(production_copy, "bricks.txt")).read().split()
    for brick in bricks[1:]:  # only the first brick's catalogs have wise_coadd_id
        for rsdir in layout.rsdirs(brick):
            path = layout.tractor(brick, rsdir)
            data = fitsio.read(path)
            fitsio.write(path, data[[name for name in data.dtype.names if name.lower() != "wise_coadd_id"]],
                         clobber=True)
    old_list, new_list = tmp_path / "old.txt", tmp_path / "new.txt"
    old_list.write_text("\n".join(bricks) + "\n")
    new_list.write_text("\n".join(bricks[1:]) + "\n")
    output = tmp_path / "derived.h5"
    assert _derive(production_copy, output, "--bricks", old_list) == 0
    with h5py.File(output, "r") as derived:
        assert "tractor_wise_coadd_id" in derived["randoms"]
    assert _derive(production_copy, output, "--bricks", new_list, "--update") == 0
    with h5py.File(output, "r") as derived:
        assert "tractor_wise_coadd_id" not in derived["randoms"]
    _assert_same(output, _fresh(production_copy, new_list, tmp_path))
    assert _history(output)[-1]["copied"] == len(bricks) - 1
