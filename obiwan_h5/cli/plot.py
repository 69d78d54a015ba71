"""``obiwan-h5 plot``: the standard analysis figures (docs/plot.md)."""

import sys

from ..plot.figures import DEFAULT_MAX_SAMPLE, FIGURES, make_figures
from .options import (
    add_batch_rows_argument,
    add_bricks_argument,
    add_output_argument,
    add_progress_arguments,
    add_sample_arguments,
    call_with_args,
    progress_arg,
    say,
    seed_arg,
    set_examples,
)

__all__ = ["add_plot_arguments", "run_plot"]


def add_plot_arguments(parser):
    """Options of ``obiwan-h5 plot``."""
    parser.description = (
        "Write one PNG per figure (" + ", ".join(FIGURES) + "), index.html and numbers.json into the "
        "directory OUT (created if needed; figures of the same name are replaced), from done bricks only, "
        "in one streaming pass over the columns the chosen figures need, using every column that can serve "
        "(e.g. the truth table's psql_g/r/z when a view has no simcat fluxes). A figure that cannot be made "
        "from the file (its columns are absent) or has no data is not drawn: it is listed on standard error "
        "as 'obiwan-h5 plot: skipped NAME: reason', in index.html and under 'skipped' in numbers.json; when "
        "none of the chosen figures could be drawn the exit status is 1. What each figure shows: "
        "docs/plot.md.")
    set_examples(parser, "obiwan-h5 plot demo/sample.h5 -o sample-figures --only recovery,confusion")
    parser.add_argument("input", metavar="IN", help="derived HDF5 file (or a view/subset of one)")
    add_output_argument(parser, "directory for the PNGs, index.html and numbers.json (created if needed)",
                        metavar="OUT", deprecated=("--output-dir",))
    add_bricks_argument(parser, "bricks to use (default: every done brick)")
    add_sample_arguments(parser, "the chosen done bricks")
    parser.add_argument("--only", metavar="NAME,...",
                        help=f"figures to make, out of {', '.join(FIGURES)} (default all)")
    add_batch_rows_argument(parser, "rows read at a time; memory holds about twice this many rows of the "
                                    "needed columns")
    parser.add_argument("--max-sample", type=int, default=DEFAULT_MAX_SAMPLE, metavar="N",
                        help="rows per band kept in the random samples behind the robust statistics and "
                             "2-D histograms (default %(default)s; every row when fewer); --seed seeds them")
    add_progress_arguments(parser)


def run_plot(args):
    """Make the figures; exit 1 when none of the chosen figures could be drawn."""
    numbers = call_with_args(make_figures, args, args.input, seed=seed_arg(args), progress=progress_arg(args))
    say(args, numbers["index"])
    for name, reason in numbers["skipped"].items():
        print(f"obiwan-h5 plot: skipped {name}: {reason}", file=sys.stderr)
    if not numbers["drawn"]:
        print("obiwan-h5 plot: error: none of the chosen figures could be drawn (see the reasons above)",
              file=sys.stderr)
        return 1
    return 0
