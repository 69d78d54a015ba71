"""``obiwan-h5 plot``: the standard analysis figures (docs/plot.md)."""

import sys

from ..plot.figures import DEFAULT_BATCH_ROWS, DEFAULT_MAX_SAMPLE, FIGURES, make_figures
from .options import add_bricks_argument, add_progress_arguments, progress_arg

__all__ = ["add_plot_arguments", "run_plot"]


def add_plot_arguments(parser):
    """Options of ``obiwan-h5 plot``."""
    parser.add_argument("input", metavar="IN", help="derived HDF5 file (or a view/subset of one)")
    parser.add_argument("-o", "--output-dir", dest="output_dir", required=True, metavar="DIR",
                        help="directory for the PNGs, index.html and numbers.json (created if needed)")
    add_bricks_argument(parser, "bricks to use: a file of brick names, a comma list, or '-' for standard input "
                                "(default: every done brick)")
    parser.add_argument("--sample", type=float, metavar="F",
                        help="use a random fraction F (0 < F <= 1) of the chosen done bricks, seeded by --seed")
    parser.add_argument("--seed", type=int, default=1, help="seed of --sample and of the capped samples (default 1)")
    parser.add_argument("--only", metavar="NAME,...",
                        help=f"figures to make, out of {', '.join(FIGURES)} (default all)")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS,
                        help=f"rows read per batch; bounds memory (default {DEFAULT_BATCH_ROWS})")
    parser.add_argument("--max-sample", type=int, default=DEFAULT_MAX_SAMPLE,
                        help="rows per band kept in the random samples behind the robust statistics and "
                             f"2-D histograms (default {DEFAULT_MAX_SAMPLE}; every row when fewer)")
    add_progress_arguments(parser)


def run_plot(args):
    numbers = make_figures(args.input, args.output_dir, only=args.only, bricks=args.bricks, sample=args.sample,
                           seed=args.seed, batch_rows=args.batch_rows, max_sample=args.max_sample,
                           progress=progress_arg(args))
    print(numbers["index"])
    for name, reason in numbers["skipped"].items():
        print(f"obiwan-h5 plot: skipped {name}: {reason}", file=sys.stderr)
    if not numbers["drawn"]:
        print("obiwan-h5 plot: error: none of the chosen figures could be drawn (see the reasons above)",
              file=sys.stderr)
        return 1
    return 0
