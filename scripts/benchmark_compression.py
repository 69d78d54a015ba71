"""The compression study of `benchmark.py` (docs/performance.md, "Compression").

Every `derive --compression` choice that several ranks can write (none, gzip) is derived
from the same production, in turns (A B C A B C ...). LZF (which parallel derive refuses,
see `obiwan_h5.job.writer.DECLINING_FILTERS`) and the filters of `hdf5plugin` (Zstd,
Blosc2/LZ4; only when it is importable, and not something `derive` offers) are applied by
rewriting the uncompressed derived file serially with h5py, beside a rewrite without
filters for scale. Then the file size and the 5-column read of each file are measured
beside the same read from the Parquet+zstd file. Times are medians of the turns: the study compares choices, and a median is less
moved by one slow spell of a shared machine than a best or a mean.
"""

import os
import statistics
import subprocess
import time

import h5py
import numpy as np

__all__ = ["GZIP_LEVELS", "best_choice", "derive_choices", "rewrite_filters", "rewrite", "study"]

# gzip levels derived by default: level 6 alone took 143 s of derive (8x level 1) on the
# benchmark production, too long for a benchmark that must end within 12 minutes
GZIP_LEVELS = (1, 4)


def derive_choices(levels=GZIP_LEVELS):
    """The choices measured through parallel `derive`: name as the file records it -> flags."""
    found = {"none": []}
    for level in levels:
        found[f"gzip-{level}+shuffle"] = ["--compression", "gzip", "--compression-level", str(level)]
    return found

# rows per slab when rewriting a file: bounds the rewrite's memory whatever the file size
REWRITE_ROWS = 1 << 18


def rewrite_filters():
    """``create_dataset`` keywords of the filters measured by a serial rewrite, by name:
    LZF (built into h5py; `derive` writes it with one process only) and the hdf5plugin
    filters when hdf5plugin is installed (it is optional: without it, no plugin rows).

    Importing hdf5plugin registers its filters with the HDF5 library of this process, which
    is also what any program reading such a file must do first.
    """
    found = {"lzf+shuffle": dict(compression="lzf", shuffle=True)}
    try:
        import hdf5plugin
    except ImportError:
        return found
    found["zstd-3+shuffle"] = dict(shuffle=True, **hdf5plugin.Zstd(clevel=3))
    found["blosc2-lz4-5+shuffle"] = dict(**hdf5plugin.Blosc2(cname="lz4", clevel=5, filters=hdf5plugin.Blosc2.SHUFFLE))
    return found


def rewrite(source, target, filters):
    """Copy the derived file `source` to `target` serially with h5py, the randoms and
    summary columns through `filters` (``create_dataset`` keywords), same chunk shapes."""
    with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
        for key, value in old.attrs.items():
            new.attrs[key] = value
        for group in ("randoms", "summary", "bricks"):
            new.create_group(group)
            for key, value in old[group].attrs.items():
                new[group].attrs[key] = value
            for name, dset in old[group].items():
                extra = filters if group != "bricks" and dset.chunks else {}
                out = new[group].create_dataset(name, shape=dset.shape, dtype=dset.dtype, chunks=dset.chunks,
                                                track_times=False, **extra)
                for key, value in dset.attrs.items():
                    out.attrs[key] = value
                for lo in range(0, len(dset), REWRITE_ROWS):
                    out[lo:lo + REWRITE_ROWS] = dset[lo:lo + REWRITE_ROWS]


def read_columns(path, columns):
    """Open `path` and read `columns` of ``randoms`` whole (h5py, as an analyst would)."""
    with h5py.File(path, "r") as derived:
        return {name: derived["randoms"][name][:] for name in columns}


def read_columns_api(path, columns):
    """The same through ``obiwan_h5.open(path).read``, which reads in row batches."""
    import obiwan_h5

    with obiwan_h5.open(path) as derived:
        return derived.read(columns, as_="numpy")


def read_parquet(path, columns):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns)


def _run(command):
    if callable(command):
        command()
        return
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


def median_in_turns(commands, repeat):
    """Median wall time of each command (a list to run, or a callable), run in turns."""
    times = [[] for _ in commands]
    for _ in range(repeat):
        for index, command in enumerate(commands):
            start = time.perf_counter()
            _run(command)
            times[index].append(time.perf_counter() - start)
    return [statistics.median(found) for found in times]


def _check_same(reference, candidates, columns):
    """The studied files hold the rows of the uncompressed one (a wrong file measures nothing)."""
    expected = read_columns(reference, columns)
    for path in candidates:
        found = read_columns(path, columns)
        for name in columns:
            if not np.array_equal(expected[name], found[name], equal_nan=expected[name].dtype.kind == "f"):
                raise RuntimeError(f"{path}: column {name} differs from {reference}")


def study(root, out, ranks, repeat, derive_command, columns, parquet=None, reads=9, levels=GZIP_LEVELS):
    """Measure every compression choice on the production `root`.

    Parameters
    ----------
    root, out : str
        The production, and the directory for the files of the study.
    ranks, repeat : int
        MPI ranks of each derive, and turns of the derives and rewrites.
    derive_command : callable
        ``derive_command(root, output, ranks, *flags)`` -> the command line to run.
    columns : list of str
        The columns of the 5-column read.
    parquet : str, optional
        The Parquet+zstd file of the same rows, read beside the HDF5 files.
    reads : int
        Turns of the reads.
    levels : tuple of int
        The gzip levels derived.

    Returns
    -------
    dict
        ``choices``: per choice ``bytes``, ``size_vs_none``, ``read5_s``, ``read5_api_s``, and
        ``derive_s`` (derive choices: the whole job, median of the turns) or ``rewrite_s`` (rewritten
        choices, with the uncompressed rewrite as ``rewrite_none_s``); ``parquet_zstd``:
        ``bytes``, ``read5_s``; ``hdf5plugin``: its version or None; ``best``.
    """
    derived = derive_choices(levels)
    paths = {name: os.path.join(out, f"compression-{name}.h5") for name in derived}
    derive_s = median_in_turns([derive_command(root, paths[name], ranks, *flags)
                                for name, flags in derived.items()], repeat)
    choices = {name: {"bytes": os.path.getsize(paths[name]), "derive_s": round(seconds, 3)}
               for name, seconds in zip(derived, derive_s)}
    rewrites = rewrite_filters()
    try:
        import hdf5plugin

        version = hdf5plugin.version
    except ImportError:
        version = None
    plain = os.path.join(out, "compression-rewrite-none.h5")
    targets = {name: os.path.join(out, f"compression-{name}.h5") for name in rewrites}
    jobs = [lambda: rewrite(paths["none"], plain, {})]
    jobs += [lambda name=name: rewrite(paths["none"], targets[name], rewrites[name]) for name in rewrites]
    rewrite_s = median_in_turns(jobs, repeat)
    for name, seconds in zip(rewrites, rewrite_s[1:]):
        choices[name] = {"bytes": os.path.getsize(targets[name]), "rewrite_s": round(seconds, 3),
                         "rewrite_none_s": round(rewrite_s[0], 3)}
    paths.update(targets)
    os.remove(plain)
    _check_same(paths["none"], [paths[name] for name in choices if name != "none"], columns)
    readers = [lambda path=paths[name]: read_columns(path, columns) for name in choices]
    readers += [lambda path=paths[name]: read_columns_api(path, columns) for name in choices]
    if parquet:
        readers.append(lambda: read_parquet(parquet, columns))
    read_s = median_in_turns(readers, reads)
    for index, name in enumerate(choices):
        choices[name].update(size_vs_none=round(choices[name]["bytes"] / choices["none"]["bytes"], 3),
                             read5_s=round(read_s[index], 5), read5_api_s=round(read_s[len(choices) + index], 5))
    result = {"choices": choices, "hdf5plugin": version, "reads": reads, "turns": repeat}
    if parquet:
        result["parquet_zstd"] = {"bytes": os.path.getsize(parquet), "read5_s": round(read_s[-1], 5)}
    result["best"] = best_choice(result)
    for path in paths.values():
        os.remove(path)
    return result


def best_choice(result):
    """The choice that parallel derive writes and plain h5py reads (no plugin) that best
    meets the targets against Parquet+zstd: of those whose file is no larger and whose
    5-column read is no slower than Parquet's, the cheapest to derive (higher gzip levels
    shrink little and cost much); else the one whose worse ratio over Parquet's (size or
    read time) is the smallest."""
    native = {name: row for name, row in result["choices"].items() if "derive_s" in row and name != "none"}
    parquet = result.get("parquet_zstd")
    if not native:
        return None
    if parquet is None:
        return min(native, key=lambda name: native[name]["bytes"])
    both = [name for name, row in native.items()
            if row["read5_s"] <= parquet["read5_s"] and row["bytes"] <= parquet["bytes"]]
    if both:
        return min(both, key=lambda name: native[name]["derive_s"])
    return min(native, key=lambda name: max(native[name]["bytes"] / parquet["bytes"],
                                            native[name]["read5_s"] / parquet["read5_s"]))
