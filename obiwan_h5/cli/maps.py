"""``obiwan-h5 maps``: selection-function HEALPix maps (docs/maps.md)."""

import os
import sys

from ..errors import InputError, JobError
from ..job.maps import run_maps as run_maps_job
from ..job.mpi import abort_on_unagreed_errors, get_comm
from .options import (
    add_batch_rows_argument,
    add_bricks_argument,
    add_output_argument,
    add_progress_arguments,
    call_with_args,
    flag_text,
    progress_arg,
    set_examples,
)

__all__ = ["add_maps_arguments", "run_maps"]


def add_maps_arguments(parser):
    """Options of ``obiwan-h5 maps``."""
    parser.description = (
        "Aggregate the rows of the done bricks per HEALPix pixel of their injected position, in one streaming "
        "pass, and write per pixel with injected sources: the counts (injected, recovered, and per selection of "
        "targets_mask true-, measured- and both-selected), the selection function of each selection "
        "(measured-selected / injected) with its binomial error, the recovered fraction, completeness, "
        "contamination, and the injection-weighted means of the brick summaries' depths, PSF sizes and E(B-V). "
        "OUT is a partial-sky HEALPix FITS table (.fits) that healpy and astropy read as it is, or HDF5 (.h5). "
        "Under mpiexec/srun the ranks share the rows; the maps do not depend on the rank count. "
        "Columns and recipes: docs/maps.md.")
    set_examples(parser, "obiwan-h5 maps demo/derived.h5 -o demo-maps-nest.fits --nside 256 --nest",
                 "obiwan-h5 maps demo/derived.h5 -o bright-maps.h5 --nside 128 --where 'psql_r < 23'")
    parser.add_argument("input", metavar="IN", help="derived file (or a view or subset of one)")
    add_output_argument(parser, "maps to write: .fits (HEALPix partial-sky table) or .h5")
    parser.add_argument("--nside", type=int, required=True, metavar="N",
                        help="HEALPix resolution, a power of two (pixels of about 58.6/N degrees)")
    parser.add_argument("--nest", action="store_true", help="NESTED pixel numbers (default RING)")
    parser.add_argument("--where", metavar="EXPR",
                        help="count only the rows passing this filter, e.g. 'psql_r < 23' (see docs/reading.md)")
    add_bricks_argument(parser, "only these bricks (their done ones)")
    add_batch_rows_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_progress_arguments(parser)


def run_maps(args):
    """Make the maps on every rank; rank 0 alone prints (the result, or the one error)."""
    comm = get_comm()
    # errors raised on every rank alike (refused input, agreed failures) are printed once;
    # anything else on one rank ends every rank rather than leave the others waiting
    with abort_on_unagreed_errors(comm, command="maps", advice=None):
        try:
            result = call_with_args(run_maps_job, args, args.input, comm=comm, progress=progress_arg(args),
                                    command_line=" ".join(sys.argv))
        except (InputError, JobError) as err:
            if comm.rank == 0:
                print(f"obiwan-h5 maps: error: {flag_text(str(err))}", file=sys.stderr)
            return 2
    if comm.rank == 0 and not args.quiet:
        print(f"wrote {args.output}: {result['pixels']} pixels (nside {args.nside}, "
              f"{'NESTED' if args.nest else 'RING'}) from {result['rows']} injected sources in "
              f"{result['bricks']} bricks, {os.path.getsize(args.output)} bytes")
    return 0
