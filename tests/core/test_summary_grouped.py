"""`summarise_bricks` (the job's grouped summary of a write round) equals `summarise_brick`
of each brick, value for value, on derived rows with the awkward cases put in."""

import h5py
import numpy as np
import pytest

from obiwan_h5.core.summary import summarise_brick, summarise_bricks
from obiwan_h5.fileformat import SUMMARY_COLUMNS


def _columns(path):
    with h5py.File(path, "r") as handle:
        return {name: handle["randoms"][name][:] for name in handle["randoms"]}


def _awkward(columns, rng):
    """NaN, inf, zero and negative inverse variances, NaN fluxes and transmissions, ties."""
    columns = {name: values.copy() for name, values in columns.items()}
    n = len(columns["unique_id"])
    for name, values in columns.items():
        if values.dtype.kind == "f" and values.ndim >= 1 and name != "ra" and name != "dec":
            pick = rng.random(n) < 0.08
            values[pick] = rng.choice(np.array([np.nan, np.inf, 0.0, -1.0], values.dtype),
                                      (pick.sum(),) + values.shape[1:])
            tie = rng.random(n) < 0.1
            values[tie] = values[np.flatnonzero(tie)[:1]] if tie.any() else values[tie]
        elif values.dtype.kind in "iu" and name.startswith("tractor_nobs"):
            values[:] = rng.integers(0, 20, values.shape)
    return columns


def _ranges(n, rng):
    """Bricks of random sizes (empty ones too) over the rows, some rows left to no brick."""
    cuts = np.sort(rng.integers(0, n + 1, 12))
    ranges = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
    return [r for i, r in enumerate(ranges) if i % 4 != 3]  # every fourth range is no brick's


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("schema", ["dr5", "dr3"])
def test_grouped_summary_equals_one_brick_at_a_time(schema, seed, dr5_derived, dr3_production, tmp_path):
    if schema == "dr5":
        path = dr5_derived
    else:
        from obiwan_h5.job import DeriveOptions, derive
        from obiwan_h5.job.mpi import SerialComm

        path = str(tmp_path / "dr3.h5")
        derive(DeriveOptions(dr3_production, path), SerialComm())
    rng = np.random.default_rng(seed)
    columns = _columns(path)
    if seed > 1:
        columns = _awkward(columns, rng)
    ranges = _ranges(len(columns["unique_id"]), rng)
    names = [f"{i:04d}p000" for i in range(len(ranges))]
    bounds = [(10.0 + i, 0.5, 9.9 + i, 10.1 + i, 0.4, 0.6) for i in range(len(ranges))]
    nobjs = list(rng.integers(0, 5000, len(ranges)))
    grouped = summarise_bricks(names, columns, ranges, bounds, nobjs)
    assert len(grouped) == len(ranges)
    for index, (start, stop) in enumerate(ranges):
        view = {name: values[start:stop] for name, values in columns.items()}
        one = summarise_brick(names[index], view, bounds[index], nobjs[index])
        assert set(one) == set(grouped[index]) == set(SUMMARY_COLUMNS)
        for name in SUMMARY_COLUMNS:
            a, b = np.asarray(one[name]), np.asarray(grouped[index][name])
            assert a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), \
                (name, index, stop - start, a, b)
