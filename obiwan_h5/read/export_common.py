"""What the export writers share: the format choice, the rows to export and the summary table.

`export.export` picks a writer (`export_fits`, `export_parquet`) with `export_format`;
each writer takes its rows from `export_source` (the chosen columns, bricks and rows,
streamed in batches, every choice checked before any output exists) and, with
``summary``, its per-brick table from `summary_table` (the summary columns and the
brick index: one definition for both formats).
"""

import contextlib
import itertools
import os

import numpy as np

from ..core.bricks import DEFAULT_SEED
from ..errors import InputError
from ..fileformat import INDEX_DESCRIPTIONS
from ..outputs import check_output
from ..progress import start_progress
from .common import input_files, open_derived, sample_bricks, select_bricks
from .reader import parse_columns

__all__ = ["FORMATS", "INDEX_IN_SUMMARY", "export_format", "export_source", "summary_table"]

# export formats and the output suffixes that choose them
FORMATS = {"fits": (".fits", ".fit"), "parquet": (".parquet", ".pq")}
# the brick index entries each exported summary row carries after the summary columns
INDEX_IN_SUMMARY = ("status", "message", "count", "offset", "checksum")


def _suffix_format(output):
    lower = str(output).lower()
    return next((name for name, suffixes in FORMATS.items() if lower.endswith(suffixes)), None)


def export_format(output, format=None):
    """``"fits"`` or ``"parquet"``: `format` if given, else from the suffix of `output`.

    Raises
    ------
    InputError
        An unknown `format`, a `format` that contradicts the suffix (a ``.fits`` file
        holding Parquet could be read by no one), a compressed suffix, or, without
        `format`, a suffix that names no format.
    """
    by_suffix = _suffix_format(output)
    if str(output).lower().endswith((".gz", ".fz", ".bz2")):
        raise InputError(f"{output}: compressed output is not written directly (it could not be streamed); "
                         "write .fits or .parquet and compress it afterwards (gzip, or fpack for images)")
    if format is not None:
        if format not in FORMATS:
            raise InputError(f"`format` {format!r}: choose one of {', '.join(FORMATS)}")
        if by_suffix is not None and by_suffix != format:
            stem = os.path.splitext(str(output))[0]
            raise InputError(f"{output}: the suffix says {by_suffix}, but `format` is {format}; name the output "
                             f"{stem}{FORMATS[format][0]} (or give no `format`)")
        return format
    if by_suffix is not None:
        return by_suffix
    raise InputError(f"{output}: cannot tell the format from the suffix; name it "
                     f"{' or '.join(s for suffixes in FORMATS.values() for s in suffixes)}, or give `format`")


@contextlib.contextmanager
def export_source(path, output, columns, bricks, where, batch_rows, overwrite, extra_outputs=(), sample=None,
                  seed=DEFAULT_SEED, progress=False):
    """Open `path` for an export: ``(derived, chosen columns, bricks in file order or None,
    batches)``, with every choice and `where` checked before any output is made; with
    `sample`, the bricks are a seeded random fraction of those chosen; with `progress`, the
    rows read are shown out of those of the chosen done bricks."""
    if batch_rows < 1:
        raise InputError(f"`batch_rows` {batch_rows}: must be at least 1")
    with open_derived(path) as derived:
        chosen = parse_columns(columns, derived.columns)
        if bricks is not None:
            bricks = select_bricks(derived, bricks)
        if sample is not None:
            bricks = sample_bricks(list(derived.bricknames) if bricks is None else bricks, sample, seed)
        for name in (output, *extra_outputs):
            check_output(name, overwrite, inputs=input_files(path))
        total = sum(stop - start for start, stop in derived.brick_ranges(bricks))
        shown = start_progress(progress, total, "rows", "export")
        batches = derived.iter_batches(chosen, bricks=bricks, where=where, batch_rows=batch_rows,
                                       on_read=lambda n: shown.update(n, rows=n))
        first = next(batches, None)  # parses `where` and checks its names before any output
        yield derived, chosen, bricks, itertools.chain([] if first is None else [first], batches)
        shown.close()


def summary_table(derived, bricks):
    """The per-brick table of an export: the summary columns of the chosen bricks (all when
    `bricks` is None, in file order), then their brick index entries (`INDEX_IN_SUMMARY`:
    status, message, ... as in the HDF5 file; offset and count refer to its rows).

    Returns
    -------
    data : dict
        Column name -> numpy array, in table order.
    infos : dict
        Column name -> ``{"dtype", "shape", "unit", "description"}``.
    """
    names = derived.summary_columns
    data = dict(derived.summary(names, bricks=bricks, as_="numpy"))
    infos = {name: derived.column_info(name, group="summary") for name in names}
    index = derived.bricks
    chosen = np.ones(len(derived.bricknames), bool) if bricks is None else np.isin(
        np.array(derived.bricknames, dtype=object), np.array(list(bricks), dtype=object))
    for name in INDEX_IN_SUMMARY:
        if name in index and name not in data:
            values = np.asarray(index[name])[chosen]
            data[name] = values
            text = INDEX_DESCRIPTIONS.get(name, "")
            if name in ("count", "offset"):
                text += " (of the HDF5 file)"
            infos[name] = {"dtype": values.dtype, "shape": values.shape[1:], "unit": "", "description": text}
    return data, infos


def read_ahead(items, depth=1):
    """Yield the items of the iterable `items`, each made by a helper thread while the
    caller uses the previous one (reading and converting the next batch while a writer that
    releases the GIL writes this one); at most `depth` items wait. An error of the thread
    is raised here; closing this generator stops the thread before it returns."""
    import queue
    import threading

    done = object()
    waiting = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        waiting.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            waiting.put((done, None))
        except BaseException as err:  # noqa: BLE001 — handed to the consumer, raised there
            waiting.put((done, err))
        finally:
            # a generator is closed by the thread that ran it, before its source file is
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    thread = threading.Thread(target=produce, name="obiwan-h5-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = waiting.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                waiting.get(timeout=0.1)
        thread.join()
