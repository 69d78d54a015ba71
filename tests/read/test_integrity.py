"""Per-brick checksums: written with the rows, and `validate --deep` finds any changed byte."""

import shutil

import h5py
import numpy as np
import pytest

from obiwan_h5.cli import main
from obiwan_h5.fileformat import rows_checksum
from obiwan_h5.read.validate import validate


def _flip_byte(dataset, row, byte=0):
    """Flip one byte of one row of a dataset in place (bools toggle)."""
    value = np.array(dataset[row : row + 1])
    raw = value.reshape(-1).view(np.uint8)
    raw[byte % raw.size] ^= 0x01 if value.dtype == bool else 0x5A
    dataset[row : row + 1] = value


def test_stored_checksums_match_the_rows(dr5_derived):
    with h5py.File(dr5_derived, "r") as derived:
        covered = derived["bricks/checksum"].attrs["columns"].split(",")
        assert covered == sorted(derived["randoms"])
        offsets, counts = derived["bricks/offset"][:], derived["bricks/count"][:]
        stored = derived["bricks/checksum"][:]
        for brick in range(len(counts)):
            rows = slice(offsets[brick], offsets[brick] + counts[brick])
            columns = {name: derived["randoms"][name][rows] for name in covered}
            assert rows_checksum(columns, covered) == stored[brick] != 0


def test_any_single_byte_of_any_column_changes_the_checksum(dr5_derived):
    with h5py.File(dr5_derived, "r") as derived:
        covered = derived["bricks/checksum"].attrs["columns"].split(",")
        first, count = derived["bricks/offset"][2], derived["bricks/count"][2]
        columns = {name: derived["randoms"][name][first:first + count] for name in covered}
    reference = rows_checksum(columns, covered)
    rng = np.random.default_rng(5)
    for name in covered:
        original = columns[name]
        for _ in range(3):
            changed = original.copy()
            raw = changed.reshape(-1).view(np.uint8)
            raw[rng.integers(raw.size)] ^= 0x01 if changed.dtype == bool else 1 << rng.integers(8)
            columns[name] = changed
            assert rows_checksum(columns, covered) != reference, name
        columns[name] = original


@pytest.mark.parametrize("column, brick, byte", [
    ("tractor_flux_g", 0, 2), ("psql_g", 5, 7), ("id", 3, 0), ("unique_id", 1, 4),
    ("tractor_brick_primary", 4, 0), ("tractor_dchisq", 5, 13), ("tractor_type", 2, 1), ("targets_mask", 0, 0),
])
def test_validate_deep_finds_a_flipped_byte(dr5_derived, tmp_path, column, brick, byte):
    path = str(tmp_path / "flipped.h5")
    shutil.copy(dr5_derived, path)
    assert validate(path, deep=True) == []
    with h5py.File(path, "r+") as derived:
        name = derived["bricks/name"][brick].decode()
        row = derived["bricks/offset"][brick] + derived["bricks/count"][brick] // 2
        _flip_byte(derived["randoms"][column], row, byte)
    problems = validate(path, deep=True)
    assert any(f"brick {name}: rows differ from the checksum" in line for line in problems), problems
    assert sum("checksum" in line for line in problems) == 1
    assert main(["validate", "--deep", "--quiet", path]) == 1


def test_deep_check_is_skipped_on_a_view(dr5_derived, tmp_path):
    from obiwan_h5.read.view import make_view

    view = str(tmp_path / "view.h5")
    make_view(dr5_derived, view, "ra,dec")
    notes = []
    assert validate(view, deep=True, notes=notes) == []
    assert any("checksums not checked" in note for note in notes)
