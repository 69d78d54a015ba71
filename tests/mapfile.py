"""A constructed derived file whose selection probabilities are known per region, for the
tests of `obiwan-h5 maps` (tests/read/test_maps.py, tests/mpi/test_mpi_maps.py).

Each brick is a region: a few HEALPix pixels (RING, `NSIDE`) whose rows are recovered with
probability ``recovered``, measured-selected (given recovered) and true-selected with
per-selection probabilities. Two bricks share one pixel, so the pixel holds a known mixture;
one brick has no galdepth_g (NaN in its summary); one brick failed (its rows must be left
out) and one is done but empty. `expected` gives, per pixel, the probabilities a map must
recover and the counts of each brick in it.
"""

import h5py
import numpy as np

from obiwan_h5.fileformat import DONE, FAILED, FORMAT_NAME, FORMAT_VERSION, SELECTIONS, TARGET_BITS, attr_value

NSIDE = 16
# brick -> (pixels (RING, NSIDE), rows, P(recovered), P(measured | recovered) and P(true) per selection,
#           status, galdepth_g)
BRICKS = {
    "0300p000": ((1400, 1401, 1402), 9000, 0.9, {"desi_elg": (0.30, 0.25), "eboss_ngc": (0.10, 0.08),
                                                  "eboss_sgc": (0.05, 0.04)}, DONE, 24.0),
    "0400p000": ((1402, 1403, 1404, 1405), 12000, 0.6, {"desi_elg": (0.50, 0.45), "eboss_ngc": (0.20, 0.15),
                                                         "eboss_sgc": (0.15, 0.10)}, DONE, 23.0),
    "0500p000": ((1500, 1501), 6000, 0.8, {"desi_elg": (0.05, 0.06), "eboss_ngc": (0.40, 0.35),
                                           "eboss_sgc": (0.30, 0.20)}, DONE, np.nan),
    "0600p000": ((1600,), 3000, 0.5, {"desi_elg": (0.5, 0.5), "eboss_ngc": (0.5, 0.5),
                                      "eboss_sgc": (0.5, 0.5)}, FAILED, 22.0),
    "0700p000": ((), 0, 0.0, {sel: (0.0, 0.0) for sel in SELECTIONS}, DONE, 25.0),
}
IMAGING_VALUES = {"psfsize_r": lambda i: 1.0 + 0.1 * i, "ebv": lambda i: 0.02 * (i + 1)}


def _positions(rng, pixels, n):
    """`n` positions spread over `pixels` (RING, NSIDE), each near a pixel's centre."""
    import hpgeom

    which = rng.integers(0, len(pixels), n)
    ra, dec = hpgeom.pixel_to_angle(NSIDE, np.asarray(pixels)[which], nest=False, lonlat=True, degrees=True)
    # well inside the pixel (about 3.7 deg across at NSIDE 16)
    return ra + rng.uniform(-0.3, 0.3, n), dec + rng.uniform(-0.3, 0.3, n)


def write_map_file(path, seed=5):
    """Write the constructed file; return what a map of it must show (`expected`)."""
    rng = np.random.default_rng(seed)
    columns = {name: [] for name in ("ra", "dec", "obiwan_mask", "targets_mask", "psql_r")}
    counts, per_pixel = [], {}
    for index, (brick, (pixels, rows, recovered_p, selections, status, _)) in enumerate(BRICKS.items()):
        ra, dec = _positions(rng, pixels, rows) if rows else (np.zeros(0), np.zeros(0))
        recovered = rng.random(rows) < recovered_p
        targets = np.zeros(rows, np.uint8)
        for sel, (measured_p, true_p) in selections.items():
            targets |= ((recovered & (rng.random(rows) < measured_p)) << TARGET_BITS[sel]).astype(np.uint8)
            targets |= ((rng.random(rows) < true_p) << TARGET_BITS[f"{sel}_true"]).astype(np.uint8)
        for name, values in (("ra", ra), ("dec", dec), ("obiwan_mask", recovered.astype(np.uint8)),
                             ("targets_mask", targets), ("psql_r", rng.uniform(20, 24, rows))):
            columns[name].append(values)
        counts.append(rows)
        if status == DONE and rows:
            import hpgeom

            pix = hpgeom.angle_to_pixel(NSIDE, ra, dec, nest=False, lonlat=True, degrees=True)
            for pixel, n in zip(*np.unique(pix, return_counts=True)):
                per_pixel.setdefault(int(pixel), {})[index] = int(n)
    counts = np.array(counts, np.int64)
    with h5py.File(path, "w") as out:
        out.attrs["format"] = FORMAT_NAME
        out.attrs["format_version"] = FORMAT_VERSION
        out.attrs["complete"] = True
        out.attrs["software_version"] = "test"
        out.attrs["creation_time"] = "2025-01-01T00:00:00+00:00"
        out.attrs["command_line"] = "tests/mapfile.py"
        out.attrs["match_radius_arcsec"] = 1.0
        out.attrs["targets_mask_bits"] = attr_value({str(bit): f"{name}: test bit" for name, bit in TARGET_BITS.items()})
        randoms = out.create_group("randoms")
        randoms.attrs["column_order"] = ",".join(columns)
        for name, parts in columns.items():
            randoms.create_dataset(name, data=np.concatenate(parts))
        bricks = out.create_group("bricks")
        bricks["name"] = np.array(list(BRICKS), "S8")
        bricks["offset"] = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        bricks["count"] = counts
        bricks["status"] = np.array([entry[4] for entry in BRICKS.values()], np.int8)
        bricks["message"] = np.array([b"" if entry[4] == DONE else b"test: failed" for entry in BRICKS.values()], "S160")
        summary = out.create_group("summary")
        summary["brickname"] = np.array(list(BRICKS), "S8")
        summary["galdepth_g"] = np.array([entry[5] for entry in BRICKS.values()], np.float64)
        summary["galdepth_g"].attrs["unit"] = "mag"
        for name, value in IMAGING_VALUES.items():
            summary[name] = np.array([value(i) for i in range(len(BRICKS))], np.float64)
    return per_pixel


def expected(per_pixel):
    """Per pixel: the selection probabilities of the rows' mixture of bricks, and the
    injection-weighted means of the summary values."""
    names = list(BRICKS)
    found = {}
    for pixel, bricks in per_pixel.items():
        n = sum(bricks.values())
        row = {"n": n, "bricks": bricks}
        for sel in SELECTIONS:
            row[f"selfunc_{sel}"] = sum(k * BRICKS[names[b]][2] * BRICKS[names[b]][3][sel][0]
                                        for b, k in bricks.items()) / n
        row["frac_recovered"] = sum(k * BRICKS[names[b]][2] for b, k in bricks.items()) / n
        known = {b: k for b, k in bricks.items() if np.isfinite(BRICKS[names[b]][5])}
        row["galdepth_g"] = (sum(k * BRICKS[names[b]][5] for b, k in known.items()) / sum(known.values())
                             if known else np.nan)
        for name, value in IMAGING_VALUES.items():
            row[name] = sum(k * value(b) for b, k in bricks.items()) / n
        found[pixel] = row
    return found
