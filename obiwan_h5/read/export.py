"""`obiwan-h5 export`: stream a derived file (or part of it) into a FITS table or a Parquet file.

    obiwan-h5 export derived.h5 -o derived.fits --summary
    obiwan-h5 export derived.h5 -o elg.parquet --columns 'unique_id,ra,dec,psql_*,tractor_flux_*' \\
        --where 'targets_mask & 4'

`export` chooses the writer from the output's suffix or `format`
(`export_common.export_format`): `export_fits.export_fits` or
`export_parquet.export_parquet` (`WRITERS`). Both take their rows from
`export_common.export_source`: only rows of bricks that are done, read in batches of
``batch_rows`` rows, so that memory does not grow with the table. The output is written
under a partial name and renamed when complete (`outputs.writing`).
"""

from .export_common import FORMATS, export_format
from .export_fits import export_fits
from .export_parquet import export_parquet

__all__ = ["FORMATS", "WRITERS", "export", "export_fits", "export_format", "export_parquet"]

# format -> its writer, which takes the parameters of `export` but `format`
WRITERS = {"fits": export_fits, "parquet": export_parquet}


def export(path, output, format=None, **options):
    """Export chosen rows and columns of `path` to `output`, as FITS or Parquet.

    Parameters
    ----------
    path : str
        Derived file (or a view of one).
    output : str
        The file to write; its suffix (``.fits``, ``.fit``, ``.parquet``, ``.pq``)
        chooses the format unless `format` does.
    format : {"fits", "parquet"}, optional
        Must agree with a suffix that names a format.
    **options
        ``columns`` (names or globs; every column when None), ``bricks`` (names, or a
        brick-list file; with ``summary`` only their summary rows), ``where`` (row filter,
        `expression.Expression`), ``summary`` (also the per-brick table: the HDU
        ``SUMMARY`` of a FITS file, `export_parquet.summary_path` beside a Parquet one),
        ``batch_rows`` (rows read and written at a time), ``overwrite``, ``sample`` (a
        random fraction, 0 < sample <= 1, of the chosen bricks, at least one) and
        ``seed`` (of `sample`, default `core.bricks.DEFAULT_SEED`), ``progress`` (the rows
        read out of those of the chosen bricks, on stderr; off by default).

    Returns
    -------
    dict
        What the writer returns: ``columns``, ``rows``, ``summary_rows`` (and for Parquet
        ``row_groups`` and ``summary_output``).
    """
    return WRITERS[export_format(output, format)](path, output, **options)
