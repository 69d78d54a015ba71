"""The reading commands: ``info``, ``validate``, ``view``, ``subset``, ``export`` (and its alias
``export-fits``)."""

import json
import os
import sys

from ..errors import InputError
from ..read.export import FORMATS, WRITERS, export_format
from ..read.info import describe, format_text
from ..read.subset import make_subset
from ..read.validate import DEFAULT_MAX_PER_CHECK, count_problems, validate
from ..read.view import make_view
from .options import (
    add_batch_rows_argument,
    add_bricks_argument,
    add_column_arguments,
    add_deprecated_alias,
    add_output_argument,
    add_progress_arguments,
    add_quiet_argument,
    add_sample_arguments,
    bricks_arg,
    call_with_args,
    column_spec,
    flag_text,
    progress_arg,
    say,
    seed_arg,
    set_examples,
)

__all__ = [
    "add_export_arguments", "add_export_fits_arguments", "add_info_arguments", "add_subset_arguments", "add_validate_arguments",
    "add_view_arguments", "run_export", "run_export_fits", "run_info", "run_subset", "run_validate", "run_view",
]


def add_info_arguments(parser):
    """Options of ``obiwan-h5 info``."""
    parser.description = (
        "Describe a derived file, view or subset: size, rows, bricks by status, creation "
        "attributes (format and software version, time, command line, ranks, completeness, "
        "match radius); --list-columns lists every column, --list-bricks every brick, --json prints "
        "one JSON document. Reads metadata only.")
    set_examples(parser, "obiwan-h5 info demo/derived.h5 --list-bricks",
                 "obiwan-h5 info demo/view.h5 --json > view-info.json")
    parser.add_argument("input", metavar="IN", help="derived file, view or subset")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document (always includes the columns)")
    columns = parser.add_argument("--list-columns", action="store_true",
                                  help="list every randoms column with dtype, per-row shape, unit and description")
    bricks = parser.add_argument("--list-bricks", action="store_true",
                                 help="list every brick with its status, rows and message (in JSON too)")
    # the former switches: elsewhere --columns and --bricks choose columns and bricks
    add_deprecated_alias(parser, "--columns", columns)
    add_deprecated_alias(parser, "--bricks", bricks)


def run_info(args):
    """Print the description of the file, as text or JSON."""
    facts = describe(args.input, bricks=args.list_bricks)
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print(format_text(facts, columns=args.list_columns, columns_hint="list them with --list-columns"))
    return 0


def add_validate_arguments(parser):
    """Options of ``obiwan-h5 validate``."""
    parser.description = (
        "Check a derived file (or a view or subset of one): attributes, layout, the brick index "
        "(offsets, counts, statuses), every row of done bricks (unique_id, brickname, masks "
        "recomputed from the stored columns) and the summary counts. Prints one line per problem; "
        "exit status 0 when valid, 1 when there are problems, 2 when the file cannot be read.")
    set_examples(parser, 'obiwan-h5 validate --deep -q demo/sample.h5 && echo "sample.h5 is valid"')
    parser.add_argument("input", metavar="IN", help="derived file, view or subset")
    add_progress_arguments(parser, quiet_help="print only the problems (nothing at all for a valid file, "
                                              "no progress)")
    parser.add_argument("--max-per-check", type=int, default=DEFAULT_MAX_PER_CHECK, metavar="N",
                        help="list at most N problems of each kind, then count the rest "
                             f"(default {DEFAULT_MAX_PER_CHECK}; 0 lists all)")
    parser.add_argument("--deep", action="store_true",
                        help="also recompute every done brick's checksum from all its columns "
                             "(reads the whole file) and report bricks whose data changed")
    add_batch_rows_argument(parser)


def run_validate(args):
    """Print each problem of the file; exit 1 when there are problems."""
    notes = []
    problems = call_with_args(validate, args, args.input, notes=notes, progress=progress_arg(args))
    for problem in problems:
        print(f"{args.input}: {flag_text(problem)}")
    if not args.quiet:
        for note in notes:
            print(f"{args.input}: note: {note}", file=sys.stderr)
        if problems:
            print(f"{args.input}: INVALID ({count_problems(problems)})")
        else:
            print(f"{args.input}: valid")
    return 1 if problems else 0


def add_view_arguments(parser):
    """Options of ``obiwan-h5 view``."""
    parser.description = (
        "Make a small HDF5 file that exposes chosen randoms columns of a derived file (plus its "
        "bricks and summary groups) through relative HDF5 external links: no data is copied. "
        "Keep the view beside its input (or move both together); read it like the input.")
    set_examples(parser, "obiwan-h5 view demo/derived.h5 -o demo/positions.h5 "
                         "--columns 'unique_id,ra,dec,tractor_ra,tractor_dec'")
    parser.add_argument("input", metavar="IN", help="derived file (or a view of one)")
    add_output_argument(parser, "view file to write")
    add_column_arguments(parser, default="none: a view needs a column list")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_quiet_argument(parser)


def run_view(args):
    """Write the view of the chosen columns."""
    spec = column_spec(args)
    if spec is None:
        raise InputError("choose the columns of the view with `columns` or `columns_file`")
    info = call_with_args(make_view, args, args.input, columns=spec)
    say(args, f"wrote {args.output}: view of {info['view_of']} with {len(info['columns'])} column(s), "
              f"{os.path.getsize(args.output)} bytes")
    return 0


def add_subset_arguments(parser):
    """Options of ``obiwan-h5 subset``."""
    parser.description = (
        "Copy chosen columns of chosen bricks (or of a random sample of bricks) into a new, "
        "self-contained derived file with the same layout: small enough for a laptop, readable "
        "and valid like the input.")
    set_examples(parser, "obiwan-h5 subset demo/derived.h5 -o laptop.h5 --sample 0.25 --seed 3 --columns "
                         "'unique_id,ra,dec,psql_*,tractor_flux_*,tractor_flux_ivar_*,obiwan_mask,targets_mask'")
    parser.add_argument("input", metavar="IN", help="derived file (or a view of one)")
    add_output_argument(parser, "file to write")
    add_column_arguments(parser)
    which = parser.add_mutually_exclusive_group()
    add_bricks_argument(which, "keep these bricks (default: every brick)")
    add_sample_arguments(parser, "the bricks", sample_group=which, deprecated=("--sample-bricks",))
    add_batch_rows_argument(parser, "rows copied per read and write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_progress_arguments(parser)


def run_subset(args):
    """Copy the chosen columns and bricks into a new file."""
    if args.seed is not None and args.sample is None:
        raise InputError("`seed` only applies to `sample`")
    result = call_with_args(make_subset, args, args.input, columns=column_spec(args), bricks=bricks_arg(args),
                            seed=seed_arg(args), progress=progress_arg(args))
    say(args, f"wrote {args.output}: {result['rows']} rows, {len(result['columns'])} column(s), "
              f"{len(result['bricks'])} brick(s), {os.path.getsize(args.output)} bytes")
    return 0


def add_export_arguments(parser, alias=False):
    """Options of ``obiwan-h5 export`` (and of its alias ``export-fits``, FITS by default)."""
    parser.description = (
        "Stream a derived file, or chosen columns, bricks and rows of it, into a FITS binary "
        "table (HDU RANDOMS) or a Parquet file (zstd, one row group per --batch-rows rows), with "
        "memory bounded by --batch-rows. The format comes from the suffix of OUT (.fits, .fit, "
        ".parquet, .pq) or --format, which must agree with such a suffix. --summary adds the per-brick "
        "summary: HDU SUMMARY of the "
        "FITS file, or OUT's stem + '.summary.parquet', both with the brick index. Column names, "
        "dtypes, units and descriptions are those of the HDF5 file; bit definitions and "
        "provenance go to the FITS header or the Parquet schema metadata.")
    if alias:
        parser.description = ("Alias of 'obiwan-h5 export --format fits' (kept for existing scripts): "
                              "it writes FITS, and refuses an OUT whose suffix names another format. "
                              + parser.description)
    if alias:
        set_examples(parser, "obiwan-h5 export-fits demo/derived.h5 -o recovered-again.fits "
                             "--columns 'unique_id,ra,dec' --where 'obiwan_mask & 1'")
    else:
        set_examples(parser, "obiwan-h5 export demo/derived.h5 -o recovered.fits "
                             "--columns 'unique_id,ra,dec,psql_g,tractor_flux_*' --where 'obiwan_mask & 1' --summary",
                     "obiwan-h5 export demo/derived.h5 -o recovered.parquet --where 'obiwan_mask & 1' --summary")
    parser.add_argument("input", metavar="IN", help="derived file (or a view of one)")
    add_output_argument(parser, "FITS file to write" if alias else "file to write: .fits or .parquet")
    parser.add_argument("--format", choices=FORMATS, default="fits" if alias else None,
                        help="output format, which must agree with a suffix of OUT that names one (default: "
                             "from the suffix" + ("; fits for export-fits)" if alias else ")"))
    add_column_arguments(parser)
    add_bricks_argument(parser)
    add_sample_arguments(parser, "the chosen bricks")
    parser.add_argument("--where", metavar="EXPR",
                        help="row filter, e.g. 'obiwan_mask & 1 and psql_g < 23' (see docs/reading.md)")
    parser.add_argument("--summary", action="store_true",
                        help="also write the summary table (FITS: HDU SUMMARY; Parquet: OUT's stem + "
                             "'.summary.parquet', with the brick index)")
    add_batch_rows_argument(parser, "rows read and written at a time; a Parquet row group")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_progress_arguments(parser)


def run_export(args):
    """Export to FITS or Parquet, as the output's suffix or ``--format`` says."""
    if args.seed is not None and args.sample is None:
        raise InputError("`seed` only applies to `sample`")
    bricks = bricks_arg(args)
    form = export_format(args.output, args.format)
    result = call_with_args(WRITERS[form], args, args.input, columns=column_spec(args), bricks=bricks,
                            seed=seed_arg(args), progress=progress_arg(args))
    size = os.path.getsize(args.output)
    if form == "fits":
        extra = f" + SUMMARY ({result['summary_rows']} bricks)" if args.summary else ""
        say(args, f"wrote {args.output}: RANDOMS {result['rows']} rows x {len(result['columns'])} columns{extra}, "
                  f"{size} bytes")
    else:
        say(args, f"wrote {args.output}: {result['rows']} rows x {len(result['columns'])} columns in "
                  f"{result['row_groups']} row group(s), {size} bytes")
        if args.summary:
            say(args, f"wrote {result['summary_output']}: summary of {result['summary_rows']} bricks, "
                      f"{os.path.getsize(result['summary_output'])} bytes")
    return 0


def add_export_fits_arguments(parser):
    """Options of ``obiwan-h5 export-fits`` (alias of ``export --format fits``)."""
    add_export_arguments(parser, alias=True)


run_export_fits = run_export
