"""``obiwan-h5 simulate`` and ``obiwan-h5 demo``: synthetic productions (SPEC §10)."""

import os

from ..core.bricks import read_brick_list
from ..errors import InputError
from ..sim.demo import run_demo as run_demo_chain
from ..sim.simulate import simulate
from .options import add_progress_arguments, progress_arg

__all__ = ["add_demo_arguments", "add_simulate_arguments", "run_demo", "run_simulate"]


def add_simulate_arguments(parser):
    """Add the ``simulate`` options to an argparse (sub)parser."""
    parser.add_argument("dir", metavar="DIR", help="output directory (absent or empty)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--bricks", type=int, default=4, metavar="N",
                       help="number of bricks, chosen from the seed in a DECaLS-like footprint (default 4)")
    which.add_argument("--brick-list", metavar="FILE",
                       help="file of brick names (one per line) to simulate instead")
    parser.add_argument("--rsdirs", default="2", metavar="K",
                        help="number of rsdirs rs0..rs<K-1>, or a comma-separated list of names "
                             "such as rs0,skip_rs0,more_rs0 (default 2)")
    parser.add_argument("--per-rsdir", type=int, default=200, metavar="M",
                        help="randoms injected per brick and rsdir (default 200)")
    parser.add_argument("--schema", choices=("dr5", "dr3"), default="dr5",
                        help="Tractor catalog schema: DR5 per-band columns or DR3 decam_* arrays (default dr5)")
    parser.add_argument("--objtype", default="elg", help="object type in file names (default elg)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, metavar="P",
                        help="worker processes (default: number of CPUs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a production previously written by simulate in DIR "
                             "(and the --randoms-table)")
    parser.add_argument("--randoms-db", metavar="CONNINFO",
                        help="also load the randoms into a table of this PostgreSQL database (libpq connection "
                             "string or postgresql:// URI), for derive --randoms-db")
    parser.add_argument("--randoms-table", metavar="NAME", help="the table to create: TABLE or SCHEMA.TABLE")
    add_progress_arguments(parser)


def run_simulate(args):
    """Run ``obiwan-h5 simulate`` from parsed arguments; return the exit status."""
    if (args.randoms_db is None) != (args.randoms_table is None):
        raise InputError("`randoms_db` and `randoms_table` go together")
    rsdirs = args.rsdirs.strip()
    rsdirs = int(rsdirs) if rsdirs.isdigit() else [s.strip() for s in rsdirs.split(",") if s.strip()]
    bricknames = read_brick_list(args.brick_list) if args.brick_list else None
    names = simulate(args.dir, nbricks=args.bricks, bricknames=bricknames, rsdirs=rsdirs,
                     per_rsdir=args.per_rsdir, schema=args.schema, objtype=args.objtype,
                     seed=args.seed, processes=args.processes, progress=progress_arg(args),
                     overwrite=args.overwrite)
    print(f"wrote {len(names)} bricks to {args.dir}")
    if args.randoms_db is not None:
        from ..production.truthdb import redact
        from ..sim.database import load_randoms_table

        loaded = load_randoms_table(args.randoms_db, args.randoms_table, os.path.join(args.dir, "randoms.fits"),
                                    replace=args.overwrite)
        print(f"loaded {loaded} randoms into {args.randoms_table} ({redact(args.randoms_db)})")
    return 0


def add_demo_arguments(parser):
    parser.add_argument("--dir", default="demo", help="working directory (default ./demo)")
    parser.add_argument("--bricks", type=int, default=16, help="bricks to simulate (default 16)")
    parser.add_argument("--rsdirs", type=int, default=2, help="rsdirs per brick (default 2)")
    parser.add_argument("--per-rsdir", type=int, default=300, help="sources per rsdir (default 300)")
    parser.add_argument("--schema", choices=("dr5", "dr3"), default="dr5")
    parser.add_argument("--seed", type=int, default=1)
    add_progress_arguments(parser)


def run_demo(args):
    """Simulate (once per set of parameters) and run the whole chain on it."""
    return run_demo_chain(args.dir, nbricks=args.bricks, rsdirs=args.rsdirs, per_rsdir=args.per_rsdir,
                          schema=args.schema, seed=args.seed, progress=progress_arg(args))
