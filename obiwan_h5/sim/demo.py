"""`obiwan-h5 demo`: the main job on the embedded default production.

Simulates a small production (kept between runs when its parameters are unchanged),
derives it into one HDF5 file, then makes from it what readers use (docs/reading.md): a
column view, a 10% brick sample and a FITS export, and prints what was made.
"""

import json
import os

import h5py
import numpy as np

from ..fileformat import DONE, FAILED, INCOMPLETE
from ..job import DeriveOptions, derive
from ..job.mpi import get_comm
from ..plot import make_figures
from ..read.export import export_fits
from ..read.subset import make_subset
from ..read.view import make_view
from .simulate import simulate

__all__ = ["VIEW_COLUMNS", "run_demo"]


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
    subset = make_subset(output, sample, sample_fraction=0.1, seed=1, overwrite=True, progress=progress)
    export = export_fits(view, fits, summary=True, overwrite=True, progress=progress)
    print("\nreading-side products (docs/reading.md):")
    print(f"  view:        {view}  ({os.path.getsize(view)} bytes; links to derived.h5)")
    print(f"  10% sample:  {sample}  ({os.path.getsize(sample)} bytes; {len(subset['bricks'])} bricks, "
          f"{subset['rows']} rows)")
    print(f"  FITS export: {fits}  ({os.path.getsize(fits)} bytes; {export['rows']} rows, "
          f"{len(export['columns'])} columns + SUMMARY)")


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


def run_demo(directory="demo", nbricks=16, rsdirs=2, per_rsdir=300, schema="dr5", seed=1, progress=False):
    """Simulate a production in ``<directory>/production`` (kept while its parameters are
    unchanged), derive it on every rank into ``<directory>/derived.h5``, and make the view,
    sample, FITS export and figures; returns the exit status (1 if a brick failed).
    `progress` (bool or `progress.ProgressStyle`) shows the progress of each step on
    stderr, from rank 0."""
    comm = get_comm()
    workdir = os.path.abspath(directory)
    production = os.path.join(workdir, "production")
    output = os.path.join(workdir, "derived.h5")
    params = {"bricks": nbricks, "rsdirs": rsdirs, "per_rsdir": per_rsdir, "schema": schema, "seed": seed}
    stamp = os.path.join(workdir, "production.json")
    if comm.rank == 0:
        os.makedirs(workdir, exist_ok=True)
        if not _same_params(stamp, params):
            print(f"simulating {nbricks} bricks x {rsdirs} rsdirs x {per_rsdir} sources "
                  f"({schema}) in {production}")
            simulate(production, nbricks=nbricks, rsdirs=rsdirs, per_rsdir=per_rsdir,
                     schema=schema, seed=seed, processes=os.cpu_count() or 1,
                     progress=progress, overwrite=True)
            with open(stamp, "w") as handle:
                json.dump(params, handle)
    comm.Barrier()
    options = DeriveOptions(production, output, overwrite=True)
    totals = derive(options, comm, command_line="obiwan-h5 demo", progress=progress)
    if comm.rank == 0:
        _report(output)
        _reading_products(workdir, output, progress)
        _figures(workdir, output, progress)
    return 1 if totals["failed"] else 0
