"""Write a realistic synthetic obiwan production (the layout of docs/concepts.md).

The output has the layout of a real production, so every command of the tool runs on a
machine with no NERSC access::

    DIR/randoms.fits              truth table of every random (id, ra, dec, g, r, z, ...)
    DIR/survey-bricks.fits        the simulated bricks, real grid rows
    DIR/bricks.txt                brick names, sorted
    DIR/simulate.json             parameters (also marks DIR as simulated for --overwrite)
    DIR/obiwan/<bri>/<brick>/<rsdir>/{simcat,sim_ids_added,skippedids,metacat}...
    DIR/tractor/<bri>/<brick>/<rsdir>/tractor-<brick>.fits
    DIR/dr/tractor/<bri>/tractor-<brick>.fits

Model, per brick: a smooth E(B-V) sky, per-brick depths and seeing around DECaLS DR5
values, a few hundred "real" sources (the unmodified data release catalog, some just
outside the brick so that ``brick_primary`` is False). Per rsdir: ELG-like randoms placed
uniformly in the brick (about 7 % deliberately within 1" of a real source), a band of
them "off-CCD" (not in ``sim_ids_added``), a few skipped ids, and a Tractor catalog of the
modified images: the real sources re-measured plus the injected sources recovered with a
probability that falls with their signal-to-noise, measured with astrometric and flux
noise drawn from the depths. Randoms within 0.5" of a real source blend into it.

Everything is drawn from numpy Generators seeded by ``(seed, brickid, rsdir)``, and the
FITS headers carry no dates, so the same arguments give byte-identical files.
"""

import json
import logging
import multiprocessing
import os
import re
import shutil
import time

import fitsio
import numpy as np

from ..core import brickgrid
from ..core.bricks import DEFAULT_SEED
from ..core.deprecation import renamed_keywords
from ..errors import InputError
from ..listfiles import brick_names
from ..production.layout import RSDIR_RE, Production, rsdir_sort_key, sort_rsdirs
from ..progress import start_progress
from .catalogs import (  # noqa: F401 (EXTINCTION, GALDEPTH, ebv_map, tractor_dtype: the model's public facts)
    BRICK_PIX,
    EXTINCTION,
    GALDEPTH,
    MAX_SKIPPED,
    METACAT_DTYPE,
    PIXSCALE,
    WISE,
    brick_conditions,
    ebv_map,
    finish,
    image_fluxes,
    measure,
    real_sources,
    simulate_rsdir,
    tractor_dtype,
    transmission,
)

__all__ = ["simulate", "ebv_map", "to_dr3", "tractor_dtype", "EXTINCTION"]

log = logging.getLogger(__name__)

MARKER = "simulate.json"
_OWNED = ("obiwan", "tractor", "dr", "randoms.fits", "survey-bricks.fits", "bricks.txt", MARKER)

def to_dr3(cat):
    """Convert a DR5-schema catalog to the DR3 schema (``decam_*`` over ugrizY)."""
    out = np.zeros(len(cat), dtype=tractor_dtype("dr3"))
    for name in out.dtype.names:
        if name in cat.dtype.names:
            out[name] = cat[name]
    out["type"][cat["type"] == b"REX "] = b"SIMP"
    # the DR3 SIMP model is a fixed 0.45" round exponential
    simp = out["type"] == b"SIMP"
    out["shapeexp_r"][simp] = 0.45
    out["shapeexp_r_ivar"][simp] = 0
    col = {"g": 1, "r": 2, "z": 4}
    dr5 = {"flux": "flux", "flux_ivar": "flux_ivar", "mw_transmission": "mw_transmission",
           "nobs": "nobs", "rchi2": "rchisq", "fracflux": "fracflux", "fracmasked": "fracmasked",
           "fracin": "fracin", "anymask": "anymask", "allmask": "allmask", "psfsize": "psfsize",
           "depth": "psfdepth", "galdepth": "galdepth", "apflux": "apflux",
           "apflux_resid": "apflux_resid", "apflux_ivar": "apflux_ivar"}
    for new, old in dr5.items():
        for b, i in col.items():
            out[f"decam_{new}"][:, i] = cat[f"{old}_{b}"]
    for b, i in (("u", 0), ("i", 3), ("Y", 5)):
        out["decam_mw_transmission"][:, i] = transmission(cat["ebv"].astype(np.float64), b)
    for new, old in (("flux", "flux"), ("flux_ivar", "flux_ivar"), ("mw_transmission", "mw_transmission"),
                     ("nobs", "nobs"), ("fracflux", "fracflux"), ("rchi2", "rchisq")):
        for i, b in enumerate(WISE):
            out[f"wise_{new}"][:, i] = cat[f"{old}_{b}"]
    return out


def _rsdir_key(rsdir):
    cls, num, _ = rsdir_sort_key(rsdir)
    return [cls + 1, num]


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fitsio.write(path, data, clobber=True)


def _simulate_brick(task):
    """Simulate and write one brick; return its truth rows (in id order)."""
    (out_dir, brick, rsdirs, per_rsdir, id_bases, seed, schema, objtype) = task
    prod = Production(out_dir, objtype=objtype)
    name = brick["brickname"].decode()
    brickid = int(brick["brickid"])
    rng = np.random.default_rng([seed, brickid])
    cond = brick_conditions(rng, brick)
    real = real_sources(rng, brick)
    flux, wflux = image_fluxes(real["ra"], real["dec"], real["mag"], real["wise_true"])
    src = {"ra": real["ra"], "dec": real["dec"], "flux": flux, "wflux": wflux,
           "rhalf": real["rhalf"], "e1": real["e1"], "e2": real["e2"]}
    dr = measure(rng, cond, src, real["kind"])
    convert = to_dr3 if schema == "dr3" else (lambda cat: cat)
    _write(prod.dr_tractor(name), convert(finish(dr.copy(), brick)))

    truths = []
    block = _id_block(per_rsdir)
    for rsdir, base in zip(rsdirs, id_bases):
        rng = np.random.default_rng([seed, brickid] + _rsdir_key(rsdir))
        nskip = int(rng.integers(1, MAX_SKIPPED + 1))
        ids = base + np.sort(rng.choice(block, per_rsdir + nskip, replace=False))
        out = simulate_rsdir(rng, cond, dr, ids, nskip)
        _write(prod.simcat(name, rsdir), out["simcat"])
        _write(prod.ids_added(name, rsdir), np.array(out["ids_added"], dtype=[("id", "i8")]))
        _write(prod.skipped_ids(name, rsdir), np.array(out["skipped"], dtype=[("ids", "i8")]))
        meta = np.zeros(1, dtype=METACAT_DTYPE)
        meta[0] = (name, objtype, rsdir, per_rsdir, ids[0], seed, (0, BRICK_PIX, 0, BRICK_PIX),
                   "grz", PIXSCALE, schema)
        _write(prod.metacat(name, rsdir), meta)
        _write(prod.tractor(name, rsdir), convert(out["tractor"]))
        truths.append(out["truth"])
    return np.concatenate(truths)


def _id_block(per_rsdir):
    # ids of one (brick, rsdir) are a sparse sorted subset of their own block, so that
    # they are unique over the production, not contiguous, and sorted brick by brick
    return int(np.ceil(1.25 * (per_rsdir + MAX_SKIPPED)))


# ------------------------------------------------------------------ orchestration

def _rsdir_names(rsdirs):
    if isinstance(rsdirs, (int, np.integer)):
        if rsdirs < 1:
            raise InputError(f"`rsdirs` must be >= 1 (got {rsdirs})")
        return [f"rs{i}" for i in range(rsdirs)]
    names = list(rsdirs)
    if not names:
        raise InputError("no rsdirs given")
    for name in names:
        if not isinstance(name, str) or not RSDIR_RE.match(name):
            raise InputError(f"{name!r} is not an rsdir name (rs<N>, skip_rs<N>, more_rs<N>, more_skip_rs<N>)")
    if len(set(names)) != len(names):
        raise InputError("duplicate rsdir names")
    return sort_rsdirs(names)


def _prepare_dir(out_dir, overwrite):
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f"{out_dir}: exists and is not a directory")
    entries = os.listdir(out_dir) if os.path.isdir(out_dir) else []
    if entries:
        if not overwrite:
            raise InputError(f"{out_dir}: directory is not empty (use `overwrite` to replace a simulated production)")
        if MARKER not in entries:
            # never delete what might be a real production
            raise InputError(f"{out_dir}: not empty and not written by 'obiwan-h5 simulate' "
                             f"(no {MARKER}); refusing to overwrite")
        for entry in _OWNED:
            path = os.path.join(out_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
    os.makedirs(out_dir, exist_ok=True)


@renamed_keywords(out_dir="output", nbricks="n_bricks", bricknames="bricks")
def simulate(output, n_bricks=4, bricks=None, rsdirs=2, per_rsdir=200, schema="dr5",
             objtype="elg", seed=DEFAULT_SEED, processes=1, progress=False, overwrite=False):
    """Write a synthetic obiwan production with the layout of a real one.

    The keywords ``out_dir``, ``nbricks`` and ``bricknames`` of earlier versions still work
    (as `output`, `n_bricks` and `bricks`), with a `DeprecationWarning`.

    Parameters
    ----------
    output : str or path
        Directory to create; must be absent or empty unless `overwrite` (which only
        replaces a directory previously written by this function).
    n_bricks : int
        Number of bricks, chosen from `seed` in contiguous patches of a DECaLS-like
        footprint. Ignored when `bricks` is given.
    bricks : str or iterable of str, optional
        Explicit bricks, each a brick of the 0.25° grid: names, a comma list, or a
        brick-list file (`listfiles.brick_names`).
    rsdirs : int or iterable of str
        Number of iterations (named ``rs0, rs1, ...``) or explicit rsdir names.
    per_rsdir : int
        Randoms in each simcat.
    schema : {"dr5", "dr3"}
        Tractor/DR catalog schema.
    objtype : str
        Object type in the file names (``elg``).
    seed : int
        Non-negative seed; the same arguments give byte-identical files.
    processes : int
        Worker processes (bricks are simulated in parallel).
    progress : bool or progress.ProgressStyle
        Show the bricks written on stderr (`obiwan_h5.progress`: a bar on a terminal, else
        a line every 30 s); off by default.
    overwrite : bool
        Replace an existing simulated production in `out_dir`.

    Returns
    -------
    list of str
        The brick names, sorted.

    Raises
    ------
    InputError
        For bad arguments, a brick name not on the grid, or a non-empty `out_dir`.
    """
    out_dir = os.fspath(output)
    rsdir_names = _rsdir_names(rsdirs)
    for label, value in (("`per_rsdir`", per_rsdir), ("`processes`", processes)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{label} must be an integer >= 1 (got {value!r})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"`seed` must be a non-negative integer (got {seed!r})")
    if schema not in ("dr5", "dr3"):
        raise InputError(f"unknown schema {schema!r} (dr5 or dr3)")
    if not re.match(r"^[a-z][a-z0-9]*$", objtype or ""):
        raise InputError(f"bad objtype {objtype!r} (lower-case letters/digits, e.g. elg)")
    if bricks is not None:
        grid_rows = brickgrid.lookup(sorted(brick_names(bricks)))
    else:
        if not isinstance(n_bricks, (int, np.integer)) or n_bricks < 1:
            raise InputError(f"`n_bricks` must be an integer >= 1 (got {n_bricks!r})")
        grid_rows = brickgrid.sample_footprint(int(n_bricks), seed)
    _prepare_dir(out_dir, overwrite)

    names = [b.decode() for b in grid_rows["brickname"]]
    params = {"bricks": len(names), "rsdirs": rsdir_names, "per_rsdir": int(per_rsdir),
              "schema": schema, "objtype": objtype, "seed": int(seed),
              "layout": "docs/concepts.md; randoms.fits, survey-bricks.fits, bricks.txt, obiwan/, tractor/, dr/"}
    with open(os.path.join(out_dir, MARKER), "w") as handle:
        json.dump(params, handle, indent=1, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    with open(os.path.join(out_dir, "bricks.txt"), "w") as handle:
        handle.write("".join(name + "\n" for name in names))
    fitsio.write(os.path.join(out_dir, "survey-bricks.fits"), grid_rows, clobber=True)

    block = _id_block(per_rsdir)
    nrs = len(rsdir_names)
    tasks = [(out_dir, brick, rsdir_names, int(per_rsdir),
              [1 + (i * nrs + k) * block for k in range(nrs)], int(seed), schema, objtype)
             for i, brick in enumerate(grid_rows)]
    shown = start_progress(progress, len(tasks), "bricks", "simulate")
    start = time.monotonic()
    nrandoms = 0
    with fitsio.FITS(os.path.join(out_dir, "randoms.fits"), "rw", clobber=True) as randoms:
        def consume(results):
            nonlocal nrandoms
            for truth in results:
                if nrandoms == 0:
                    randoms.write(truth)
                else:
                    randoms[-1].append(truth)
                nrandoms += len(truth)
                shown.update(1, rows=len(truth))

        if processes > 1 and len(tasks) > 1:
            with multiprocessing.get_context().Pool(min(processes, len(tasks))) as pool:
                consume(pool.imap(_simulate_brick, tasks))
        else:
            consume(map(_simulate_brick, tasks))
    shown.close()
    log.info("simulated %d bricks x %d rsdirs (%d randoms, schema %s) in %s in %.1f s",
             len(names), nrs, nrandoms, schema, out_dir, time.monotonic() - start)
    return names
