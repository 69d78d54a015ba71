"""`obiwan-h5 maps`: selection-function HEALPix maps of a derived file, in one streaming pass.

    obiwan-h5 maps derived.h5 -o maps.fits --nside 256
    obiwan-h5 maps derived.h5 -o bright.fits --nside 128 --nest --where 'psql_r < 23'

Each row of the done bricks (of `bricks`, passing `where`) is put in the HEALPix pixel of
its injected position and counted per ``(brick, pixel)`` (`core.maps`); the map holds, per
pixel with injected sources, the counts, the selection function of each selection with its
binomial error, the recovered fraction, completeness and contamination, and the
injection-weighted means of the bricks' summary depths, PSF sizes and E(B-V). Only four
columns are read (ra, dec, obiwan_mask, targets_mask, plus those `where` names), batch by
batch: memory follows the pixels of the footprint, not the rows.

The steps are separate so that the MPI driver (`job.maps`) can share the rows between
ranks: `prepare_maps` checks every choice before any output is made, `count_pixels`
counts some of the chosen bricks, and `write_maps` turns the merged counts into the file
(`maps_output`). `make_maps` is the three in one process. Pixel numbers come from hpgeom
(docs/maps.md says why that library).
"""

import os
from dataclasses import dataclass, field

import numpy as np

from ..core.maps import IMAGING, PixelCounts, check_nside, pixel_table
from ..errors import InputError
from ..fileformat import DONE
from ..progress import start_progress
from .common import check_output, input_files, open_derived, select_bricks
from .reader import DEFAULT_BATCH_ROWS, ROW_NUMBERS

__all__ = ["MAP_FORMATS", "MAP_INPUT_COLUMNS", "BrickTicker", "MapPlan", "count_pixels", "make_maps", "map_format",
           "pixel_numbers", "prepare_maps", "write_maps"]

# the randoms columns a map is made from
MAP_INPUT_COLUMNS = ("ra", "dec", "obiwan_mask", "targets_mask")
# output formats and the suffixes that choose them
MAP_FORMATS = {"fits": (".fits", ".fit"), "hdf5": (".h5", ".hdf5")}


def map_format(output):
    """``"fits"`` or ``"hdf5"`` from the suffix of `output`, else `InputError`."""
    lower = str(output).lower()
    for name, suffixes in MAP_FORMATS.items():
        if lower.endswith(suffixes):
            return name
    known = " or ".join(suffix for suffixes in MAP_FORMATS.values() for suffix in suffixes)
    raise InputError(f"{output}: cannot tell the format of the maps from the suffix; name it {known}")


def pixel_numbers(nside, ra, dec, nest=False):
    """HEALPix pixels (int64) of positions in degrees, RING or NESTED (hpgeom)."""
    import hpgeom

    return hpgeom.angle_to_pixel(nside, np.asarray(ra, np.float64), np.asarray(dec, np.float64), nest=nest,
                                 lonlat=True, degrees=True).astype(np.int64, copy=False)


@dataclass
class MapPlan:
    """What a map is made of, checked: every rank of the MPI driver gets the same plan.

    `bricks` are the chosen done bricks in file order, `brick_rows` their rows (before
    `where`).
    """

    path: str
    output: str
    format: str
    nside: int
    nest: bool
    where: str = None
    bricks: list = field(default_factory=list)
    brick_rows: np.ndarray = None
    batch_rows: int = DEFAULT_BATCH_ROWS

    @property
    def npix(self):
        """Pixels of the whole sky at the map's `nside`."""
        return 12 * self.nside * self.nside

    @property
    def rows(self):
        """Rows of the chosen bricks (before `where`)."""
        return int(self.brick_rows.sum())


def prepare_maps(path, output, nside, nest=False, where=None, bricks=None, batch_rows=DEFAULT_BATCH_ROWS,
                 overwrite=False):
    """Check a map request before any output exists; return its `MapPlan`.

    Parameters are those of `make_maps`.

    Raises
    ------
    InputError
        A bad `nside`, `batch_rows` or output suffix, an unreadable input, a missing
        column, an unknown brick, a `where` that names unknown columns or cannot be
        evaluated, or an output that exists (without `overwrite`) or is an input.
    """
    nside = check_nside(nside)
    if int(batch_rows) < 1:
        raise InputError(f"`batch_rows` {batch_rows}: must be at least 1")
    form = map_format(output)
    with open_derived(path) as derived:
        absent = [name for name in MAP_INPUT_COLUMNS if name not in derived.columns]
        if absent:
            raise InputError(f"{path}: a map needs the columns {', '.join(MAP_INPUT_COLUMNS)}; "
                             f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not in the file")
        names = derived.bricknames
        requested = names if bricks is None else select_bricks(derived, bricks)
        status = derived.bricks["status"]
        position = {name: i for i, name in enumerate(names)}
        index = np.array([position[name] for name in requested], np.int64)
        index = index[status[index] == DONE]
        if int(len(names)) * 12 * nside * nside >= 1 << 62:
            raise InputError(f"`nside` {nside}: too fine for the {len(names)} bricks of {path}")
        _check_where(derived, where, [names[i] for i in index if derived.bricks["count"][i] > 0])
        check_output(output, overwrite, inputs=input_files(path))
        return MapPlan(path=path, output=output, format=form, nside=nside, nest=bool(nest), where=where or None,
                       bricks=[names[i] for i in index], brick_rows=derived.bricks["count"][index].astype(np.int64),
                       batch_rows=int(batch_rows))


def _check_where(derived, where, bricks):
    """Refuse a `where` that does not parse, names unknown columns or fails on the first
    chosen row (a string column compared with a number), before any rank reads a batch."""
    if not where:
        return
    next(derived.iter_batches([MAP_INPUT_COLUMNS[0]], bricks=bricks[:1], where=where, batch_rows=1), None)


class BrickTicker:
    """Rows read -> bricks done, for progress by brick over a run of bricks read in order.

    `report(done, rows)` is called with the running counts after each batch; `finish`
    reports every brick (bricks with no rows are never read).
    """

    def __init__(self, brick_rows, report):
        self.ends = np.cumsum(np.asarray(brick_rows, np.int64))
        self.report = report
        self.rows = 0

    def __call__(self, rows):
        self.rows += int(rows)
        self.report(int(np.searchsorted(self.ends, self.rows, side="right")), self.rows)

    def finish(self):
        """Report every brick done, with all their rows."""
        self.report(len(self.ends), int(self.ends[-1]) if len(self.ends) else 0)


def count_pixels(plan, bricks=None, on_read=None):
    """Counts per ``(brick, pixel)`` of the rows of `bricks` (names; all of the plan's when
    None) that pass the plan's `where`: ``(keys, counts)`` as `core.maps.merge_counts`.

    `on_read` is called with the rows of each batch read (before `where`).
    """
    bricks = plan.bricks if bricks is None else bricks
    totals = PixelCounts(plan.npix)
    if not bricks:
        return totals.result()
    with open_derived(plan.path) as derived:
        offsets = derived.bricks["offset"]
        batches = derived.iter_batches(list(MAP_INPUT_COLUMNS), bricks=bricks, where=plan.where,
                                       batch_rows=plan.batch_rows, on_read=on_read, row_numbers=True)
        for batch in batches:
            if not len(batch[ROW_NUMBERS]):
                continue
            # an empty brick shares its offset with the next one: "right" finds the brick with rows
            brick = np.searchsorted(offsets, batch[ROW_NUMBERS], side="right") - 1
            totals.add(brick, pixel_numbers(plan.nside, batch["ra"], batch["dec"], plan.nest),
                       batch["obiwan_mask"], batch["targets_mask"])
    return totals.result()


def write_maps(plan, keys, counts, command_line=""):
    """Make the map from merged counts and write it to ``plan.output`` (FITS or HDF5,
    through a partial file renamed when complete).

    Returns
    -------
    dict
        ``pixels`` (written), ``rows`` (injected sources counted), ``bricks`` (chosen done
        bricks), ``format``, ``output``.
    """
    from .maps_output import write_fits, write_hdf5

    with open_derived(plan.path) as derived:
        present = [name for name in IMAGING if name in derived.summary_columns]
        values = derived.summary(present, as_="numpy") if present else {}
        pixels, columns = pixel_table(keys, counts, plan.npix, values)
        meta = {"derived": derived, "command_line": command_line, "rows": int(columns["n_inj"].sum())}
        (write_fits if plan.format == "fits" else write_hdf5)(plan, pixels, columns, meta)
    return {"pixels": len(pixels), "rows": meta["rows"], "bricks": len(plan.bricks), "format": plan.format,
            "output": os.path.abspath(plan.output), "missing_summary": [name for name in IMAGING if name not in values]}


def make_maps(path, output, nside, nest=False, where=None, bricks=None, batch_rows=DEFAULT_BATCH_ROWS,
              overwrite=False, progress=False, command_line=""):
    """Write the selection-function maps of `path` to `output`, in one process.

    Parameters
    ----------
    path : str
        Derived file (or a view or subset of one).
    output : str
        ``.fits``/``.fit`` (a partial-sky HEALPix FITS table) or ``.h5``/``.hdf5``.
    nside : int
        HEALPix resolution, a power of two.
    nest : bool
        NESTED pixel numbers (default RING).
    where : str, optional
        Row filter (`expression.Expression`): only the rows passing it are counted.
    bricks : str or list of str, optional
        Only these bricks (names or a brick-list file); their done ones are used.
    batch_rows : int
        Rows read at a time.
    overwrite : bool
    progress : bool or progress.ProgressStyle
        Show the bricks gone through on stderr; off by default.
    command_line : str
        Recorded in the file's provenance.

    Returns
    -------
    dict
        As `write_maps`.

    Under MPI, `obiwan_h5.job.maps.run_maps` shares the rows between the ranks; it writes
    the same file.
    """
    plan = prepare_maps(path, output, nside, nest, where, bricks, batch_rows, overwrite)
    shown = start_progress(progress, len(plan.bricks), "bricks", "maps", rows_total=plan.rows)
    ticker = BrickTicker(plan.brick_rows, shown.moveto)
    keys, counts = count_pixels(plan, on_read=ticker)
    ticker.finish()
    shown.close()
    return write_maps(plan, keys, counts, command_line)
