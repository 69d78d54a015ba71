"""``obiwan-h5 simulate`` and ``obiwan-h5 demo``: synthetic productions."""

import contextlib
import io
import os

from ..errors import InputError
from ..sim.demo import run_demo as run_demo_chain
from ..sim.simulate import simulate
from .options import (
    add_output_argument,
    add_progress_arguments,
    add_seed_argument,
    add_simulated_bricks_arguments,
    call_with_args,
    progress_arg,
    say,
    seed_arg,
    set_examples,
)

__all__ = ["add_demo_arguments", "add_simulate_arguments", "run_demo", "run_simulate"]


def add_simulate_arguments(parser):
    """Add the ``simulate`` options to an argparse (sub)parser."""
    parser.description = (
        "Write a synthetic production with the layout of a real obiwan production into the directory "
        "OUT (absent or empty): randoms.fits, survey-bricks.fits, bricks.txt, the obiwan/, tractor/ and "
        "dr/tractor/ trees, and simulate.json (its parameters). The defaults of derive are these names, "
        "so 'obiwan-h5 derive --data-dir OUT' needs nothing else.")
    parser.description += (
        "\nWhat is simulated: per brick, a smooth E(B-V), depths and seeing around DECaLS DR5 values and "
        "a few hundred real sources (the DR catalog); per rsdir, ELG-like randoms placed uniformly (about "
        "7% within 1 arcsec of a real source), some off the CCDs (absent from sim_ids_added), and a "
        "Tractor catalog in which the recovery probability falls with signal-to-noise and the "
        "measurements carry astrometric and flux noise drawn from the depths. The same arguments give "
        "byte-identical files.")
    set_examples(parser, "obiwan-h5 simulate -o sim-dr3 --n-bricks 2 --rsdirs rs0,rs100,skip_rs0,more_rs0 "
                         "--per-rsdir 100 --schema dr3 --seed 5 --processes 1")
    add_output_argument(parser, "output directory, absent or empty", metavar="OUT", positional=True)
    add_simulated_bricks_arguments(parser, default_count=4, former_list_option=True)
    parser.add_argument("--rsdirs", default="2", metavar="K|NAMES",
                        help="number of rsdirs rs0..rs<K-1>, or a comma-separated list of names "
                             "such as rs0,skip_rs0,more_rs0 (default %(default)s)")
    parser.add_argument("--per-rsdir", type=int, default=200, metavar="M",
                        help="randoms injected per brick and rsdir (default %(default)s)")
    parser.add_argument("--schema", choices=("dr5", "dr3"), default="dr5",
                        help="Tractor catalog schema: DR5 per-band columns or DR3 decam_* arrays (default %(default)s)")
    parser.add_argument("--objtype", default="elg", help="object type in file names (default %(default)s)")
    add_seed_argument(parser, "random seed: the same arguments give byte-identical files")
    parser.add_argument("--processes", type=int, default=None, metavar="P",
                        help="worker processes (default: the number of CPUs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a production previously written by simulate in OUT "
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
    processes = (os.cpu_count() or 1) if args.processes is None else args.processes
    names = call_with_args(simulate, args, rsdirs=rsdirs, seed=seed_arg(args), processes=processes,
                           progress=progress_arg(args))
    say(args, f"wrote {len(names)} bricks to {args.output}")
    if args.randoms_db is not None:
        from ..production.truthdb import redact
        from ..sim.database import load_randoms_table

        loaded = load_randoms_table(args.randoms_db, args.randoms_table, os.path.join(args.output, "randoms.fits"),
                                    replace=args.overwrite)
        say(args, f"loaded {loaded} randoms into {args.randoms_table} ({redact(args.randoms_db)})")
    return 0


def add_demo_arguments(parser):
    """Add the ``demo`` options to an argparse (sub)parser."""
    parser.description = (
        "Simulate a production in OUT/production/, derive it into OUT/derived.h5 and make view.h5, "
        "sample.h5, view.fits and figures/ beside it (docs/quickstart.md). The production is kept, and "
        "not simulated again, while the parameters are unchanged; the derived file and the products are "
        "always rewritten.")
    set_examples(parser, "obiwan-h5 demo -o small-demo --n-bricks 2 --rsdirs 1 --per-rsdir 100")
    add_output_argument(parser, "working directory", metavar="OUT", default="demo", deprecated=("--dir",))
    add_simulated_bricks_arguments(parser, default_count=16)
    parser.add_argument("--rsdirs", type=int, default=2, metavar="K", help="rsdirs per brick (default %(default)s)")
    parser.add_argument("--per-rsdir", type=int, default=300, metavar="M",
                        help="sources per brick and rsdir (default %(default)s)")
    parser.add_argument("--schema", choices=("dr5", "dr3"), default="dr5",
                        help="Tractor catalog schema (default %(default)s)")
    add_seed_argument(parser, "random seed of the simulation")
    add_progress_arguments(parser)


def run_demo(args):
    """Simulate (once per set of parameters) and run the whole chain on it; with
    ``--quiet``, without its report of what it made."""
    with contextlib.redirect_stdout(io.StringIO()) if args.quiet else contextlib.nullcontext():
        return call_with_args(run_demo_chain, args, seed=seed_arg(args), progress=progress_arg(args))
