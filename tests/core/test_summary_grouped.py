"""`summarise_bricks` (the job's grouped summary of a write round) equals a plain one-brick
computation (numpy.median and numpy.histogram per brick, below), value for value, on
derived rows with the awkward cases put in."""

import h5py
import numpy as np
import pytest

from obiwan_h5.core import selection
from obiwan_h5.core.photometry import TYPE_CODES, band_quantity, tractor_types, true_flux
from obiwan_h5.core.summary import MAG_BINS, _eboss_measured, brick_area, ivar_to_depth, summarise_bricks
from obiwan_h5.fileformat import (
    BANDS,
    NEXPHIST_BINS,
    OBIWAN_BITS,
    SELECTIONS,
    SUMMARY_COLUMNS,
    TARGET_BITS,
    TRACTOR_TYPES,
    bit_set,
)


def _median(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else np.nan


def _of_recovered(columns, quantity, band, recovered):
    values = band_quantity(columns, quantity, band, prefix="tractor_")
    return np.zeros(0) if values is None else np.asarray(values, dtype=np.float64)[recovered]


def _half_recovered(magnitude, recovered):
    finite = np.isfinite(magnitude)
    total, _ = np.histogram(magnitude[finite], bins=MAG_BINS)
    found, _ = np.histogram(magnitude[finite & recovered], bins=MAG_BINS)
    for index in np.flatnonzero(total > 0):
        if found[index] / total[index] <= 0.5:
            return 0.5 * (MAG_BINS[index] + MAG_BINS[index + 1])
    return np.nan


def _one_brick(brickname, columns, bounds, nobjs):
    """The summary row of one brick, written out statistic by statistic (docs/concepts.md)."""
    n_inj = len(columns["unique_id"])
    recovered = bit_set(columns["obiwan_mask"], OBIWAN_BITS["recovered"][0])
    targets = columns["targets_mask"]
    row = {"brickname": brickname.encode(), "ra": bounds[0], "dec": bounds[1], "brick_area": brick_area(*bounds[2:]),
           "n_inj": n_inj, "n_rec": int(recovered.sum()), "nobjs": nobjs,
           "frac_recovered": recovered.sum() / n_inj if n_inj else np.nan}
    for sel in SELECTIONS:
        true_bit = bit_set(targets, TARGET_BITS[f"{sel}_true"])
        row[f"n_true_{sel}"] = int(true_bit.sum())
        row[f"n_true_rec_meas_{sel}"] = int((true_bit & recovered & bit_set(targets, TARGET_BITS[sel])).sum())
    for region in ("ngc", "sgc"):
        row[f"n_true_rec_meas_eboss_{region}_allmask"] = int((_eboss_measured(columns, region, "allmask") & recovered
                                                              & bit_set(targets, TARGET_BITS[f"eboss_{region}_true"])).sum())
    kinds = tractor_types(columns.get("tractor_type", np.zeros(n_inj, "S4")))
    for kind, code in zip(TRACTOR_TYPES, TYPE_CODES):
        row[f"n_type_{kind.lower()}"] = int((recovered & (kinds == code)).sum())
    row["ebv"] = _median(np.asarray(columns["tractor_ebv"])[recovered]) if "tractor_ebv" in columns else np.nan
    for band in BANDS:
        row[f"psfsize_{band}"] = _median(_of_recovered(columns, "psfsize", band, recovered))
        trans = row[f"trans_{band}"] = _median(_of_recovered(columns, "mw_transmission", band, recovered))
        with np.errstate(divide="ignore", invalid="ignore"):
            row[f"ext_{band}"] = float(-2.5 * np.log10(trans)) if trans > 0 else np.nan
        nobs = band_quantity(columns, "nobs", band, prefix="tractor_")
        nobs = np.zeros(0, np.int64) if nobs is None else np.asarray(nobs)[recovered]
        row[f"nexp_{band}"] = float(np.median(nobs)) if len(nobs) else np.nan
        row[f"nexphist_{band}"] = np.bincount(np.clip(nobs.astype(np.int64), 0, NEXPHIST_BINS - 1),
                                              minlength=NEXPHIST_BINS)
        for kind in ("psfdepth", "galdepth"):
            ivar = _of_recovered(columns, kind, band, recovered)
            ivar = ivar[ivar > 0]
            row[f"{kind}_{band}"] = float(ivar_to_depth(_median(ivar))) if ivar.size else np.nan
        row[f"depth_at_half_recovered_{band}"] = _half_recovered(selection.flux_to_mag(true_flux(columns, band)),
                                                                 recovered)
    return row


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
        one = _one_brick(names[index], view, bounds[index], nobjs[index])
        assert set(one) == set(grouped[index]) == set(SUMMARY_COLUMNS)
        for name in SUMMARY_COLUMNS:
            a, b = np.asarray(one[name]), np.asarray(grouped[index][name])
            assert a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), \
                (name, index, stop - start, a, b)


@pytest.mark.parametrize("seed", [4, 5])
def test_grouped_summary_of_many_small_bricks(seed, dr5_derived):
    """Bricks of a few rows each (their medians come from one sort of them all, not one
    numpy.median per brick): still equal to the one-brick computation, awkward values in."""
    from obiwan_h5.core.summary import FEW_ROWS

    rng = np.random.default_rng(seed)
    columns = _awkward(_columns(dr5_derived), rng)
    sizes = rng.integers(0, 40, 200)
    sizes[:3] = [FEW_ROWS, FEW_ROWS + 1, 1]  # at and past the limit between the two ways, and one row
    cuts = np.concatenate([[0], np.cumsum(sizes)])
    cuts = cuts[cuts <= len(columns["unique_id"])]
    ranges = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
    names = [f"{i:04d}p000" for i in range(len(ranges))]
    bounds = [(10.0, 0.5, 9.9, 10.1, 0.4, 0.6)] * len(ranges)
    nobjs = [7] * len(ranges)
    grouped = summarise_bricks(names, columns, ranges, bounds, nobjs)
    for index, (start, stop) in enumerate(ranges):
        view = {name: values[start:stop] for name, values in columns.items()}
        one = _one_brick(names[index], view, bounds[index], nobjs[index])
        for name in SUMMARY_COLUMNS:
            a, b = np.asarray(one[name]), np.asarray(grouped[index][name])
            assert a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (name, index, a, b)
