"""`obiwan-h5 subset`: a physical, self-contained smaller copy of a derived file.

    obiwan-h5 subset derived.h5 -o laptop.h5 --sample 0.05 --seed 1
    obiwan-h5 subset derived.h5 -o two.h5 --bricks 0001p000,0002p000 --columns 'ra,dec,psql_*'

The copy has the layout of the input (docs/format.md): the same groups, and for each kept column
the same dtype, per-row shape, attributes, chunk shape (capped to the new length) and
filters; ``column_order`` lists the kept columns. Rows are copied column by column, range
by range, in batches of ``--batch-rows`` rows, so memory does not grow with the file.
``bricks`` is rebuilt for the kept bricks (offsets recomputed, count, status and message
kept), ``summary`` keeps their rows. Rows of every kept brick are copied whatever its
status, so a subset validates exactly like its input. Root attributes are kept, plus
provenance: ``subset_of``, ``subset_columns``, ``subset_nbricks``, and ``subset_bricks``
or ``sample_fraction`` and ``seed``.

Brick sampling is deterministic: ``numpy.random.default_rng(seed)`` draws
``max(1, floor(F * B + 0.5))`` of the B bricks without replacement; they keep file order.
"""

import os

import h5py
import numpy as np

from .. import __version__
from ..core.bricks import DEFAULT_SEED
from ..core.deprecation import renamed_keywords
from ..errors import InputError
from ..fileformat import VIEW_ATTRS
from ..outputs import check_free_space, check_output, writing
from ..progress import start_progress
from .common import input_files, new_hdf5, open_derived, sample_bricks, select_bricks, utc_now
from .reader import DEFAULT_BATCH_ROWS, parse_columns

__all__ = ["make_subset", "sample_bricks"]

# HDF5 attributes in the default (compact) storage hold at most 64 KiB; longer brick
# lists are described by their count (the subset's own bricks/name lists them anyway)
MAX_LIST_ATTR_BYTES = 60000


@renamed_keywords(sample_fraction="sample")
def make_subset(path, output, columns=None, bricks=None, sample=None, seed=DEFAULT_SEED,
                batch_rows=DEFAULT_BATCH_ROWS, overwrite=False, progress=False):
    """Copy chosen columns and bricks of `path` into the new file `output`.

    Parameters
    ----------
    path : str
        Derived file (or a view of one).
    output : str
        Written under a partial name and renamed when complete (`outputs.writing`).
    columns : str or list of str, optional
        Names or globs; every column when None.
    bricks : str or list of str, optional
        Bricks to keep (any order; they keep file order): names, or a brick-list file
        (`listfiles.brick_names`). Exclusive with `sample`.
    sample : float, optional
        Keep a random fraction of the bricks (see `sample_bricks`). Formerly
        ``sample_fraction``, still accepted with a `DeprecationWarning`.
    seed : int
        Seed of `sample`.
    batch_rows : int
        Rows per read and write.
    overwrite : bool
    progress : bool or progress.ProgressStyle
        Show the columns copied, and the rows of the output copied so far, on stderr
        (`obiwan_h5.progress`); off by default.

    Returns
    -------
    dict
        ``columns``, ``bricks`` (kept, in file order) and ``rows``.
    """
    if bricks is not None and sample is not None:
        raise InputError("choose bricks with `bricks` or `sample`, not both")
    if batch_rows < 1:
        raise InputError(f"`batch_rows` {batch_rows}: must be at least 1")
    with open_derived(path) as derived:
        chosen = parse_columns(columns, derived.columns)
        if sample is not None:
            kept = sample_bricks(derived.bricknames, sample, seed)
        elif bricks is not None:
            kept = select_bricks(derived, bricks)
        else:
            kept = list(derived.bricknames)
        index = derived.bricks
        ranges = derived.brick_ranges(kept, done_only=False) if kept else []
        summary_columns = derived.summary_columns
    check_output(output, overwrite, inputs=input_files(path))

    keep = np.isin(np.char.decode(index["name"]), kept) if len(index["name"]) else np.zeros(0, bool)
    counts = index["count"][keep]
    new_index = {name: values[keep] for name, values in index.items()}
    new_index["offset"] = (np.cumsum(counts) - counts).astype(index["offset"].dtype)
    nrows = int(counts.sum())
    provenance = {
        "subset_of": os.path.abspath(path),
        "subset_columns": ",".join(chosen),
        "subset_nbricks": len(kept),
        "subset_creation_time": utc_now(),
        "subset_software_version": __version__,
    }
    if sample is not None:
        # the attribute keeps its name: it is part of the file format (docs/format.md)
        provenance.update(sample_fraction=float(sample), seed=int(seed))
    else:
        listed = "all" if bricks is None else ",".join(kept)
        if len(listed) > MAX_LIST_ATTR_BYTES:
            listed = f"{len(kept)} bricks, listed in bricks/name"
        provenance["subset_bricks"] = listed

    with writing(output) as partial, h5py.File(path, "r") as source:
        check_free_space(output, _expected_bytes(source, chosen, nrows, keep))
        chunks = sum(-(-nrows // _chunk_rows(source["randoms"][name], nrows)) for name in chosen) if nrows else 0
        with new_hdf5(partial, datasets=len(chosen) + len(summary_columns) + len(index), chunks=chunks) as out:
            for key, value in source.attrs.items():
                if key not in VIEW_ATTRS and key not in ("sample_fraction", "seed", "subset_bricks"):
                    out.attrs[key] = value
            for key, value in provenance.items():
                out.attrs[key] = value
            randoms = out.create_group("randoms")
            randoms.attrs["column_order"] = ",".join(chosen)
            # copied column by column; the rows shown are the rows of the output copied so
            # far (row copies over the number of columns), not rows times columns
            shown = start_progress(progress, len(chosen), "columns", "subset", rows_total=nrows)
            for done, name in enumerate(chosen, 1):
                src = source["randoms"][name]
                _copy_rows(src, _create_like(src, randoms, name, nrows), ranges, batch_rows)
                shown.moveto(done, rows=nrows * done // len(chosen))
            summary = out.create_group("summary")
            _copy_group_attrs(source["summary"], summary)
            for name in summary_columns:
                src = source["summary"][name]
                # one row per brick: small enough to read whole whatever the file size
                _create_like(src, summary, name, int(keep.sum()))[...] = src[...][keep]
            bricks_group = out.create_group("bricks")
            _copy_group_attrs(source["bricks"], bricks_group)
            for name in source["bricks"]:
                src = source["bricks"][name]
                dset = bricks_group.create_dataset(name, data=new_index[name].astype(src.dtype), track_times=False)
                dset.attrs.update(src.attrs)
    shown.close()
    return {"columns": chosen, "bricks": kept, "rows": nrows}


def _expected_bytes(source, chosen, nrows, keep):
    """About the bytes of the subset: its share of the stored size of each kept column
    (compressed as stored: the subset keeps the filters), and the summary and index."""
    total = 0
    for name in chosen:
        dset = source["randoms"][name]
        stored = dset.id.get_storage_size() if dset.chunks is not None else dset.size * dset.dtype.itemsize
        total += stored * nrows // max(len(dset), 1)
    for group in ("summary", "bricks"):
        for name in source[group]:
            dset = source[group][name]
            total += dset.size * dset.dtype.itemsize * int(keep.sum()) // max(len(dset), 1)
    return total


def _chunk_rows(src, nrows):
    """Rows per chunk of the copy of `src` with `nrows` rows (None: contiguous)."""
    return min(src.chunks[0], nrows) if src.chunks is not None and nrows > 0 else None


def _copy_group_attrs(source, target):
    for key, value in source.attrs.items():
        target.attrs[key] = value


def _create_like(src, group, name, nrows):
    """A dataset like `src` (dtype, row shape, attributes, chunks, filters) with `nrows` rows."""
    options = {}
    if _chunk_rows(src, nrows):
        options["chunks"] = (_chunk_rows(src, nrows),) + tuple(src.chunks[1:])
        for key in ("compression", "compression_opts", "shuffle", "fletcher32", "scaleoffset"):
            value = getattr(src, key)
            if value:
                options[key] = value
    dset = group.create_dataset(name, shape=(nrows,) + src.shape[1:], dtype=src.dtype,
                                track_times=False, **options)
    dset.attrs.update(src.attrs)
    return dset


def _copy_rows(src, dset, ranges, batch_rows):
    """Copy the row `ranges` of `src` one after the other into `dset`, `batch_rows` rows at
    a time; into a compressed `dset`, whole chunks at a time (at least one chunk): the
    output has no chunk cache (`common.new_hdf5`), so a compressed chunk written in pieces
    would be read, decompressed and compressed again for each piece."""
    if not len(dset):
        return
    step = batch_rows
    if dset.chunks and dset.id.get_create_plist().get_nfilters():
        step = dset.chunks[0] * max(1, batch_rows // dset.chunks[0])
    buffer = np.empty((step,) + dset.shape[1:], dtype=dset.dtype)
    at = filled = 0
    for start, stop in ranges:
        lo = start
        while lo < stop:
            hi = min(lo + batch_rows, stop, lo + step - filled)
            src.read_direct(buffer, np.s_[lo:hi], np.s_[filled:filled + hi - lo])
            filled += hi - lo
            lo = hi
            if filled == step:
                dset[at:at + step] = buffer
                at, filled = at + step, 0
    if filled:
        dset[at:at + filled] = buffer[:filled]
        at += filled
    if at != len(dset):
        raise RuntimeError(f"{dset.name}: copied {at} rows, expected {len(dset)}")
