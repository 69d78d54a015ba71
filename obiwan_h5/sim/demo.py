"""`obiwan-h5 demo`: the main job on the embedded default production.

Simulates a small production (kept between runs when its parameters are unchanged),
derives it into one HDF5 file, then makes from it what readers use (docs/reading.md): a
column view, a 10% brick sample, a FITS export, the selection-function maps (docs/maps.md)
and the figures, and prints what was made.
"""

import json
import os

import h5py
import numpy as np

from ..core.bricks import DEFAULT_SEED
from ..fileformat import DONE, FAILED, INCOMPLETE
from ..job import DeriveOptions, derive
from ..job.mpi import get_comm
from ..listfiles import brick_names
from ..plot import make_figures
from ..read.export import export_fits
from ..read.maps import make_maps
from ..read.subset import make_subset
from ..read.view import make_view
from .simulate import simulate

__all__ = ["MAPS_NSIDE", "VIEW_COLUMNS", "run_demo"]

# the HEALPix resolution of the demo's maps: pixels of 0.23 deg, about 20 over its 1-deg patch
MAPS_NSIDE = 256


def _figures(workdir, output, progress=False):
    """The standard analysis figures of the demo file (docs/plot.md)."""
    figures = os.path.join(workdir, "figures")
    make_figures(output, figures, progress=progress)
    print(f"\nfigures: {os.path.join(figures, 'index.html')}")


# what the reading-side commands make from the demo file (names used in docs/reading.md)
VIEW_COLUMNS = "unique_id,ra,dec,psql_g,psql_r,psql_z,tractor_flux_*,obiwan_mask,targets_mask"


def _reading_products(workdir, output, progress=False):
    """A view, a 10% brick sample and a FITS export of the view, with their sizes."""
    view = os.path.join(workdir, "view.h5")
    sample = os.path.join(workdir, "sample.h5")
    fits = os.path.join(workdir, "view.fits")
    make_view(output, view, VIEW_COLUMNS, overwrite=True)
    subset = make_subset(output, sample, sample=0.1, overwrite=True, progress=progress)
    export = export_fits(view, fits, summary=True, overwrite=True, progress=progress)
    print("\nreading-side products (docs/reading.md):")
    print(f"  view:        {view}  ({os.path.getsize(view)} bytes; links to derived.h5)")
    print(f"  10% sample:  {sample}  ({os.path.getsize(sample)} bytes; {len(subset['bricks'])} bricks, "
          f"{subset['rows']} rows)")
    print(f"  FITS export: {fits}  ({os.path.getsize(fits)} bytes; {export['rows']} rows, "
          f"{len(export['columns'])} columns + SUMMARY)")


def _maps(workdir, output, progress=False):
    """The selection-function maps of the demo file (docs/maps.md)."""
    maps = os.path.join(workdir, "maps.fits")
    result = make_maps(output, maps, MAPS_NSIDE, overwrite=True, progress=progress, command_line="obiwan-h5 demo")
    print(f"  maps:        {maps}  ({os.path.getsize(maps)} bytes; {result['pixels']} HEALPix pixels at nside "
          f"{MAPS_NSIDE}, docs/maps.md)")


def _same_params(stamp, params):
    try:
        with open(stamp) as handle:
            return json.load(handle) == params
    except (OSError, ValueError):
        return False


def _report(output):
    with h5py.File(output, "r") as derived:
        status = derived["bricks/status"][:]
        mask = derived["randoms/obiwan_mask"][:]
        rows = len(mask)
    recovered = float(np.mean(mask & 1)) if rows else float("nan")
    print(f"\nderived file: {output}")
    print(f"  bricks: {np.sum(status == DONE)} done, {np.sum(status == INCOMPLETE)} incomplete, {np.sum(status == FAILED)} failed")
    print(f"  rows:   {rows}")
    print(f"  recovered fraction: {recovered:.3f}")


def run_demo(output="demo", n_bricks=16, bricks=None, rsdirs=2, per_rsdir=300, schema="dr5", seed=DEFAULT_SEED,
             progress=False):
    """Simulate a production in ``<output>/production`` (kept while its parameters are
    unchanged), derive it on every rank into ``<output>/derived.h5``, and make the view,
    sample, FITS export, maps and figures; returns the exit status (1 if a brick failed).

    Parameters
    ----------
    output : str
        The working directory.
    n_bricks : int
        Bricks to simulate, chosen from `seed`; ignored when `bricks` is given.
    bricks : str or list of str, optional
        The bricks to simulate: names, a comma list or a brick-list file.
    rsdirs, per_rsdir, schema, seed
        As in `obiwan_h5.sim.simulate.simulate`.
    progress : bool or progress.ProgressStyle
        Show the progress of each step on stderr, from rank 0.
    """
    comm = get_comm()
    workdir = os.path.abspath(output)
    production = os.path.join(workdir, "production")
    derived_path = os.path.join(workdir, "derived.h5")
    # names, not the file that listed them: the stamp must change when the list does
    names = None if bricks is None else sorted(brick_names(bricks))
    params = {"bricks": n_bricks if names is None else names, "rsdirs": rsdirs, "per_rsdir": per_rsdir,
              "schema": schema, "seed": seed}
    stamp = os.path.join(workdir, "production.json")
    if comm.rank == 0:
        os.makedirs(workdir, exist_ok=True)
        if not _same_params(stamp, params):
            print(f"simulating {n_bricks if names is None else len(names)} bricks x {rsdirs} rsdirs x "
                  f"{per_rsdir} sources ({schema}) in {production}")
            simulate(production, n_bricks=n_bricks, bricks=names, rsdirs=rsdirs, per_rsdir=per_rsdir,
                     schema=schema, seed=seed, processes=os.cpu_count() or 1,
                     progress=progress, overwrite=True)
            with open(stamp, "w") as handle:
                json.dump(params, handle)
    comm.Barrier()
    options = DeriveOptions(production, derived_path, overwrite=True)
    totals = derive(options, comm, command_line="obiwan-h5 demo", progress=progress)
    if comm.rank == 0:
        _report(derived_path)
        _reading_products(workdir, derived_path, progress)
        _maps(workdir, derived_path, progress)
        _figures(workdir, derived_path, progress)
    return 1 if totals["failed"] else 0
