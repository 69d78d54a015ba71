"""`obiwan-h5 demo`: the main job on the embedded default production.

Simulates a small production (kept between runs when its parameters are unchanged),
derives it into one HDF5 file and prints what was made.
"""

import json
import os

import h5py
import numpy as np

from .parallel import get_comm

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("--dir", default="demo", help="working directory (default ./demo)")
    parser.add_argument("--bricks", type=int, default=16, help="bricks to simulate (default 16)")
    parser.add_argument("--rsdirs", type=int, default=2, help="rsdirs per brick (default 2)")
    parser.add_argument("--per-rsdir", type=int, default=300, help="sources per rsdir (default 300)")
    parser.add_argument("--schema", choices=("dr5", "dr3"), default="dr5")
    parser.add_argument("--seed", type=int, default=1)


def run(args):
    from .derive import DeriveOptions, derive
    from .simulate import simulate

    comm = get_comm()
    workdir = os.path.abspath(args.dir)
    production = os.path.join(workdir, "production")
    output = os.path.join(workdir, "derived.h5")
    params = {"bricks": args.bricks, "rsdirs": args.rsdirs, "per_rsdir": args.per_rsdir,
              "schema": args.schema, "seed": args.seed}
    stamp = os.path.join(workdir, "production.json")
    if comm.rank == 0:
        os.makedirs(workdir, exist_ok=True)
        if not _same_params(stamp, params):
            print(f"simulating {args.bricks} bricks x {args.rsdirs} rsdirs x {args.per_rsdir} sources "
                  f"({args.schema}) in {production}")
            simulate(production, nbricks=args.bricks, rsdirs=args.rsdirs, per_rsdir=args.per_rsdir,
                     schema=args.schema, seed=args.seed, processes=os.cpu_count() or 1,
                     progress=True, overwrite=True)
            with open(stamp, "w") as handle:
                json.dump(params, handle)
    comm.Barrier()
    options = DeriveOptions(production, output, overwrite=True)
    totals = derive(options, comm, command_line="obiwan-h5 demo")
    if comm.rank == 0:
        _report(output)
    return 1 if totals["failed"] else 0


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
    print(f"  bricks: {np.sum(status == 1)} done, {np.sum(status == 2)} incomplete, {np.sum(status == 3)} failed")
    print(f"  rows:   {rows}")
    print(f"  recovered fraction: {recovered:.3f}")
