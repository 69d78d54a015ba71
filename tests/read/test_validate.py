"""`obiwan-h5 validate`: every corruption is reported, precisely, and a good file passes."""

import shutil

import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.errors import InputError
from obiwan_h5.read.validate import validate


@pytest.fixture
def damaged(dr5_derived, tmp_path):
    """Returns a function: copy the derived file, change it with `edit(handle)`, return the path."""

    def make(edit):
        path = str(tmp_path / "damaged.h5")
        shutil.copy(dr5_derived, path)
        with h5py.File(path, "r+") as handle:
            edit(handle)
        return path

    return make


def _index(path):
    with h5py.File(path, "r") as handle:
        return {name: handle["bricks"][name][:] for name in handle["bricks"]}


def _names(index):
    return [name.decode() for name in index["name"]]


def _recovered_row(handle, brick):
    """A row of `brick` recovered (bit 0) and in no measured selection, so flipping its bit 0
    changes nothing else."""
    start = handle["bricks/offset"][brick]
    stop = start + handle["bricks/count"][brick]
    mask = handle["randoms/obiwan_mask"][start:stop]
    targets = handle["randoms/targets_mask"][start:stop]
    return int(start + np.flatnonzero((mask == 1) & (targets & 7 == 0))[0])


def test_a_good_file_passes(dr5_derived, capsys):
    notes = []
    assert validate(dr5_derived, notes=notes) == [] and notes == []
    assert main(["validate", dr5_derived]) == 0
    assert capsys.readouterr().out.strip() == f"{dr5_derived}: valid"
    assert main(["validate", dr5_derived, "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_overlapping_offset(dr5_derived, damaged):
    index = _index(dr5_derived)
    names, offset, count = _names(index), index["offset"], index["count"]
    path = damaged(lambda h: h["bricks/offset"].__setitem__(3, offset[3] - 5))
    assert validate(path) == [
        f"bricks row 3 ({names[3]}): offset {offset[3] - 5} overlaps the last 5 row(s) of brick {names[2]} "
        f"(offset {offset[2]} + count {count[2]} = {offset[3]})",
        f"bricks row 4 ({names[4]}): offset {offset[4]} leaves a gap of 5 row(s) after brick {names[3]} "
        f"(offset {offset[3] - 5} + count {count[3]} = {offset[4] - 5})",
    ]


def test_wrong_count(dr5_derived, damaged):
    index = _index(dr5_derived)
    names, offset, count = _names(index), index["offset"], index["count"]
    path = damaged(lambda h: h["bricks/count"].__setitem__(2, count[2] + 1))
    problems = validate(path)
    total = int(count.sum())
    assert f"bricks/count: sums to {total + 1} rows, but the randoms datasets have {total} rows" in problems
    assert (f"bricks row 3 ({names[3]}): offset {offset[3]} overlaps the last 1 row(s) of brick {names[2]} "
            f"(offset {offset[2]} + count {count[2] + 1} = {offset[3] + 1})") in problems
    assert f"summary/n_inj row 2 ({names[2]}): {count[2]}, but bricks/count is {count[2] + 1}" in problems


def test_unique_id_of_another_brick_without_id_columns(damaged, tmp_path):
    from obiwan_h5.read.subset import make_subset

    def edit(handle):
        edit.row = int(handle["bricks/offset"][3])
        edit.value = handle["randoms/unique_id"][0]  # a row of brick 0, copied into brick 3
        handle["randoms/unique_id"][edit.row] = edit.value

    source = damaged(edit)
    subset = str(tmp_path / "ids.h5")
    make_subset(source, subset, columns="unique_id")
    names = _names(_index(subset))
    problems = validate(subset)
    assert f"randoms row {edit.row} (brick {names[3]}): unique_id {edit.value.decode()!r} does not name its " \
           f"brick {names[3]!r}" in problems
    # found again as a duplicate when both bricks are read together, never missed when not
    assert len(problems) == 2 and "appears 2 times" in problems[1]
    assert validate(subset, batch_rows=1) == problems[:1]


def test_duplicate_unique_id(dr5_derived, damaged):
    def edit(handle):
        row = int(handle["bricks/offset"][1]) + 10
        for name in ("unique_id", "id", "rsdir"):
            handle["randoms"][name][row + 1] = handle["randoms"][name][row]
        edit.row, edit.value = row, handle["randoms/unique_id"][row]

    path = damaged(edit)
    brick = _names(_index(path))[1]
    assert validate(path) == [f"randoms rows {edit.row}, {edit.row + 1} (brick {brick}): "
                              f"unique_id {edit.value.decode()!r} appears 2 times"]


def test_unique_id_not_matching_id_brick_rsdir(damaged):
    def edit(handle):
        edit.row = int(handle["bricks/offset"][2])
        edit.expected = handle["randoms/unique_id"][edit.row]
        handle["randoms/unique_id"][edit.row] = b"1_0000p000_rs0"

    path = damaged(edit)
    brick = _names(_index(path))[2]
    assert validate(path) == [f"randoms row {edit.row} (brick {brick}): unique_id '1_0000p000_rs0', expected "
                              f"{edit.expected.decode()!r} from id, brick and rsdir"]


def test_flipped_recovered_bit(dr5_derived, damaged):
    def edit(handle):
        edit.row = _recovered_row(handle, 4)
        edit.ra = handle["randoms/tractor_ra"][edit.row]
        edit.uid = handle["randoms/unique_id"][edit.row].decode()
        handle["randoms/obiwan_mask"][edit.row] = 0

    path = damaged(edit)
    names = _names(_index(path))
    with h5py.File(dr5_derived, "r") as src:
        n_rec = src["summary/n_rec"][4]
    assert validate(path) == [
        f"randoms row {edit.row} (brick {names[4]}, unique_id {edit.uid}): obiwan_mask bit 0 (recovered) is "
        f"not set but tractor_ra is {float(edit.ra)!r}",
        f"summary/n_rec row 4 ({names[4]}): {n_rec}, but {n_rec - 1} of its rows have obiwan_mask bit 0",
        f"summary/frac_recovered row 4 ({names[4]}): "
        f"{float(_stored(path, 'frac_recovered', 4))!r}, but {n_rec - 1} of {_index(path)['count'][4]} rows "
        "are recovered",
    ] + [f"summary/nexphist_{band} row 4 ({names[4]}): sums to {n_rec}, but {n_rec - 1} of its rows are recovered"
         for band in "grz"]


def _stored(path, name, row):
    with h5py.File(path, "r") as handle:
        return handle["summary"][name][row]


def test_targets_mask_recomputed(damaged):
    def edit(handle):
        edit.row = int(handle["bricks/offset"][0]) + 3
        edit.value = int(handle["randoms/targets_mask"][edit.row])
        handle["randoms/targets_mask"][edit.row] = edit.value ^ (1 << 5)

    path = damaged(edit)
    problems = validate(path)
    assert len(problems) == 1
    assert f"randoms row {edit.row} " in problems[0]
    assert (f"targets_mask {edit.value ^ 32:#08b}, recomputed {edit.value:#08b} from the stored columns "
            "(bit 5 differ)") in problems[0]


def test_measured_target_bit_without_recovery(damaged):
    def edit(handle):
        start, stop = handle["bricks/offset"][0], handle["bricks/offset"][0] + handle["bricks/count"][0]
        mask = handle["randoms/obiwan_mask"][start:stop]
        edit.row = int(start + np.flatnonzero(mask == 0)[0])
        handle["randoms/targets_mask"][edit.row] |= 4

    problems = validate(damaged(edit))
    assert any(f"randoms row {edit.row} " in p and "measured bits (0-2) set on a row not recovered" in p
               for p in problems)
    assert any(f"randoms row {edit.row} " in p and "(bit 2 differ)" in p for p in problems)


def test_bad_status_and_inconsistent_statuses(dr5_derived, damaged):
    index = _index(dr5_derived)
    names, count = _names(index), index["count"]

    def edit(handle):
        handle["bricks/status"][1] = 7
        handle["bricks/status"][2] = 2  # incomplete, yet it has rows and no message
        handle["bricks/status"][3] = 3  # failed: its rows should be fill values
        handle["bricks/message"][3] = b"tractor catalog unreadable"

    problems = validate(damaged(edit), max_per_check=0)
    assert f"bricks row 1 ({names[1]}): status 7 is not one of 0 pending, 1 done, 2 incomplete, 3 failed" in problems
    assert (f"bricks row 2 ({names[2]}): incomplete but has {count[2]} rows (incomplete bricks are skipped "
            "when planning and have none)") in problems
    assert f"bricks row 2 ({names[2]}): incomplete without a message saying why" in problems
    failed = [p for p in problems if "failed brick, but unique_id" in p]
    assert len(failed) == count[3] and f"(brick {names[3]})" in failed[0]


def test_summary_mismatch(dr5_derived, damaged):
    names = _names(_index(dr5_derived))
    with h5py.File(dr5_derived, "r") as src:
        n_rec = src["summary/n_rec"][0]
    path = damaged(lambda h: h["summary/n_rec"].__setitem__(0, n_rec + 1))
    assert validate(path) == [f"summary/n_rec row 0 ({names[0]}): {n_rec + 1}, but {n_rec} of its rows have "
                              "obiwan_mask bit 0"]


def test_missing_or_short_dataset(damaged):
    path = damaged(lambda h: h["randoms"].__delitem__("psql_g"))
    assert validate(path) == ["randoms/psql_g: listed in column_order but missing"]

    def shorten(handle):
        values, attrs = handle["randoms/psql_ra"][:-1], dict(handle["randoms/psql_ra"].attrs)
        del handle["randoms/psql_ra"]
        handle["randoms/psql_ra"] = values
        handle["randoms/psql_ra"].attrs.update(attrs)
        shorten.n = len(values) + 1

    path = damaged(shorten)
    assert validate(path) == [f"randoms/psql_ra: {shorten.n - 1} rows, expected {shorten.n} "
                              "(most datasets of the group)"]
    path = damaged(lambda h: h.__delitem__("summary"))
    assert "group /summary is missing" in validate(path)


def test_a_lost_column_is_invalid_even_when_column_order_forgets_it(damaged, tmp_path):
    """Nothing else would show it: the checksums cover the columns present, the rows agree."""

    def lose(handle):
        randoms = handle["randoms"]
        del randoms["psql_g"]
        randoms.attrs["column_order"] = ",".join(n for n in randoms.attrs["column_order"].split(",") if n != "psql_g")

    path = damaged(lose)
    problem = "randoms/psql_g: missing, though bricks/checksum columns lists it"
    assert validate(path) == [problem] and validate(path, deep=True) == [problem]
    # a subset or a view holds the columns it was made with: one of them lost is as bad
    subset, view = str(tmp_path / "s.h5"), str(tmp_path / "v.h5")
    assert main(["subset", path, "-o", subset, "--columns", "ra,dec", "-q"]) == 0
    assert main(["view", path, "-o", view, "--columns", "ra,dec", "-q"]) == 0
    assert validate(subset) == [] and validate(view) == []
    for made, attribute in ((subset, "subset_columns"), (view, "view_columns")):
        with h5py.File(made, "r+") as handle:
            del handle["randoms/dec"]
            handle["randoms"].attrs["column_order"] = "ra"
        assert validate(made) == [f"randoms/dec: missing, though {attribute} lists it"]


def test_pending_bricks_of_an_interrupted_file_have_no_summary_yet(dr5_derived, damaged):
    """A job stopped after its first bricks: the others are pending, with summary rows not
    written yet. That is what an interrupted file is, not a list of summary problems."""

    def interrupt(handle):
        handle.attrs["complete"] = False
        handle["bricks/status"][2:] = 0
        handle["bricks/checksum"][2:] = 0
        handle["summary/brickname"][2:] = b""
        handle["summary/n_inj"][2:] = 0

    path = damaged(interrupt)
    assert validate(path) == ["attribute complete is false: the job that wrote the file has not finished "
                              "(finish it with a derive given `resume`)"]


def test_file_attributes_and_brick_names(dr5_derived, damaged):
    names = _names(_index(dr5_derived))

    def edit(handle):
        handle.attrs["complete"] = False
        del handle.attrs["nranks"]
        handle["bricks/name"][0], handle["bricks/name"][1] = names[1].encode(), names[0].encode()

    problems = validate(damaged(edit))
    assert problems[:2] == ["attribute complete is false: the job that wrote the file has not finished "
                            "(finish it with a derive given `resume`)", "attribute nranks is missing"]
    assert f"bricks/name rows 0-1: {names[1]} before {names[0]}, not sorted" in problems
    assert f"summary/brickname row 0: {names[0]!r}, but bricks/name is {names[1]!r}" in problems
    assert any(p.startswith("randoms row ") and f"brickname {names[0]!r}, expected {names[1]!r}" in p
               for p in problems)
    path = damaged(lambda h: h["bricks/name"].__setitem__(2, b"bad/name"))
    assert "bricks/name row 2: 'bad/name' is not a brick name" in validate(path)


def test_many_problems_are_counted_past_the_limit(damaged):
    def edit(handle):
        mask = handle["randoms/obiwan_mask"][:]
        flip = np.flatnonzero(mask == 1)[:30]
        mask[flip] = 0
        handle["randoms/obiwan_mask"][:] = mask

    path = damaged(edit)
    problems = validate(path)
    assert sum("obiwan_mask bit 0 (recovered) is not set" in p for p in problems) == 20
    assert "... and 10 more obiwan_mask problems" in problems
    assert sum("obiwan_mask bit 0 (recovered) is not set" in p for p in validate(path, max_per_check=0)) == 30


def test_rows_are_read_in_bounded_batches(dr5_derived, damaged, monkeypatch):
    path = damaged(lambda h: h["randoms/obiwan_mask"].__setitem__(7, 3 - h["randoms/obiwan_mask"][7]))
    expected = validate(path)
    assert expected
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name.startswith("/randoms/"):
            reads.append(self.name)
            reads.append(len(original(self, key)))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    problems = validate(path, batch_rows=10)
    monkeypatch.undo()
    largest = int(_index(path)["count"].max())
    assert max(n for n in reads if isinstance(n, int)) <= largest  # one brick at a time
    assert sorted(problems) == sorted(expected)


def test_views_subsets_and_unreadable_files(dr5_derived, tmp_path, capsys):
    from obiwan_h5.read.subset import make_subset
    from obiwan_h5.read.view import make_view

    view = str(tmp_path / "v.h5")
    make_view(dr5_derived, view, "unique_id,brickname,id,rsdir,obiwan_mask,tractor_ra")
    notes = []
    assert validate(view, notes=notes) == []
    assert notes == ["targets_mask not checked against obiwan_mask: no column targets_mask"]
    make_view(dr5_derived, view, "unique_id,obiwan_mask", overwrite=True)
    notes = []
    assert validate(view, notes=notes) == []
    assert "unique_id checked against its brick only, not against id and rsdir: no column id, rsdir" in notes
    sample = str(tmp_path / "s.h5")
    make_subset(dr5_derived, sample, sample=0.3, seed=2)
    assert validate(sample) == []

    with pytest.raises(InputError, match="no such file"):
        validate(str(tmp_path / "missing.h5"))
    (tmp_path / "text.h5").write_text("not hdf5")
    assert main(["validate", str(tmp_path / "text.h5")]) == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err
    plain = str(tmp_path / "plain.h5")
    with h5py.File(plain, "w") as handle:
        handle["x"] = [1]
    assert main(["validate", plain]) == 1
    out = capsys.readouterr().out
    assert f"{plain}: attribute format is missing (not an obiwan_h5 derived file?)" in out
    assert f"{plain}: group /randoms is missing" in out and "INVALID" in out
