"""``obiwan-h5 derive``: options of the derive job (docs/derive.md).

Each option is a field of `job.DeriveOptions` of the same name, with that field's default:
the options are built from the parsed arguments by name (`options.options_from_args`).
"""

import os
import sys

from ..errors import JobError, OutputError
from ..job import DeriveOptions, derive
from ..job.mpi import abort_on_unagreed_errors, get_comm
from ..job.options import COMPRESSIONS, DEFAULT_DB_CONNECTIONS, DEFAULT_GZIP_LEVEL
from ..production.truthdb import DEFAULT_TIMEOUT_S
from .options import (
    add_bricks_argument,
    add_output_argument,
    add_progress_arguments,
    field_defaults,
    flag_text,
    options_from_args,
    progress_arg,
    set_examples,
)

__all__ = ["add_derive_arguments", "run_derive"]


def add_derive_arguments(parser):
    """Options of ``obiwan-h5 derive``."""
    default = field_defaults(DeriveOptions)
    parser.description = (
        "The main job: derive the joined truth/measurement table of every brick of a production into one "
        "HDF5 file. Run it as one process, or under mpiexec/srun with any number of ranks (the data written "
        "do not depend on it). Inputs, options, failures and resume: docs/derive.md; at NERSC: docs/nersc.md.")
    set_examples(parser, "obiwan-h5 derive --data-dir sim-dr3 -o sim-dr3.h5 --expect-rsdirs 4",
                 "obiwan-h5 derive --data-dir sim-dr3 --bricks 3299p257 --match-radius 0.5 -o one-brick.h5")
    parser.add_argument("--data-dir", required=True, help="production root holding obiwan/ and tractor/")
    add_output_argument(parser, "derived HDF5 file to write")
    parser.add_argument("--randoms", help="randoms truth table, FITS or HDF5 (default DATA_DIR/randoms.fits)")
    parser.add_argument("--randoms-db", metavar="CONNINFO",
                        help="read the truth table from this PostgreSQL database instead of --randoms: a libpq "
                             "connection string or postgresql:// URI ('' for libpq's defaults); put the password "
                             "in ~/.pgpass or PGPASSWORD, never here (needs obiwan_h5[postgres])")
    parser.add_argument("--randoms-table", metavar="NAME",
                        help="the truth table in --randoms-db: TABLE or SCHEMA.TABLE")
    parser.add_argument("--db-connections", type=int, metavar="K",
                        help="at most K ranks connect to --randoms-db; the others get their rows over MPI "
                             f"(default {DEFAULT_DB_CONNECTIONS}; only with --randoms-db)")
    parser.add_argument("--db-timeout", type=float, metavar="SECONDS",
                        help="the longest wait for --randoms-db: to connect, and for each reply; a server that "
                             f"does not answer in time fails the job or the bricks of the round (default "
                             f"{DEFAULT_TIMEOUT_S:g}; raise it for a table whose first pass takes longer)")
    parser.add_argument("--dr-dir", help="real data release root with tractor/<bri>/ (default DATA_DIR/dr)")
    parser.add_argument("--survey-bricks", help="survey-bricks.fits[.gz] (default DATA_DIR/survey-bricks.fits)")
    add_bricks_argument(parser, "the bricks to derive", default="DATA_DIR/bricks.txt")
    parser.add_argument("--objtype", default=default["objtype"],
                        help="injected object type in file names (default %(default)s)")
    parser.add_argument("--expect-rsdirs", type=int, metavar="N",
                        help="bricks without exactly N rsdirs are incomplete (status 2)")
    parser.add_argument("--match-radius", type=float, default=default["match_radius"], metavar="ARCSEC",
                        help="match radius in arcsec (default %(default)g)")
    parser.add_argument("--keep-all-apflux", action="store_true", help="keep every apflux_* Tractor column")
    parser.add_argument("--resume", action="store_true", help="complete an interrupted file: redo bricks not done")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--update", action="store_true",
                        help="grow a complete file: derive only new bricks and bricks whose inputs changed, "
                             "copy the others, drop bricks no longer listed (docs/derive.md)")
    parser.add_argument("--verify-inputs", action="store_true",
                        help="fingerprint each brick's inputs by content (CRC-32) as well as path, size and mtime")
    parser.add_argument("--max-memory", type=float, default=default["max_memory"], metavar="MB",
                        help="memory per rank for rows between collective writes (default %(default)g MB); "
                             "peak memory stays flat whatever the production size")
    parser.add_argument("--chunk-kb", type=int, default=default["chunk_kb"],
                        help="HDF5 chunk size per column in KiB; 0 = contiguous layout (default %(default)s)")
    parser.add_argument("--compression", choices=COMPRESSIONS, default=default["compression"],
                        help="HDF5 filter of the columns, readable by any h5py (lzf: by h5py only, not by "
                             "HDF5's C tools, and written by one process only); needs --chunk-kb > 0 "
                             "(default %(default)s; docs/performance.md compares them)")
    parser.add_argument("--compression-level", type=int, metavar="1-9",
                        help=f"gzip level (default {DEFAULT_GZIP_LEVEL})")
    parser.add_argument("--no-shuffle", dest="shuffle", action="store_false", default=default["shuffle"],
                        help="no byte-shuffle filter before the compression (shuffling usually shrinks "
                             "floating-point columns)")
    parser.add_argument("--mpi-info", action="append", default=default["mpi_info"], metavar="KEY=VALUE",
                        help="MPI-IO hint passed to the file driver (repeatable)")
    parser.add_argument("--align", type=int, default=default["align"], metavar="BYTES",
                        help="align datasets of at least BYTES to BYTES (e.g. the Lustre stripe size)")
    add_progress_arguments(parser)


def run_derive(args):
    """Run the derive job on every rank; exit 0, 1 when a brick failed, 2 when refused."""
    options = options_from_args(DeriveOptions, args)
    comm = get_comm()
    try:
        with abort_on_unagreed_errors(comm, advice="run the same update again" if args.update else
                                      "complete the file later with --resume"):
            result = derive(options, comm, command_line=_command_line(sys.argv, args.randoms_db),
                            progress=progress_arg(args))
    except OutputError as err:
        # one process (several ranks abort above): after a failed write HDF5 cannot close
        # the file cleanly, and its clean-up at exit may crash; what was flushed stays
        print(f"obiwan-h5 derive: error: {flag_text(str(err))}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)
    except JobError as err:
        if comm.rank == 0:
            print(f"obiwan-h5 derive: error: {flag_text(str(err))}", file=sys.stderr)
        return 2
    return 1 if result["failed"] else 0


def _command_line(argv, conninfo):
    """The command line to record in the file, with the connection string (which may hold a
    password) replaced by its redacted form."""
    text = " ".join(argv)
    if conninfo:
        from ..production.truthdb import redact

        text = text.replace(conninfo, redact(conninfo))
    return text
