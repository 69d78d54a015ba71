#!/usr/bin/env python
"""Side-by-side measurements of obiwan_h5 against what it replaces and against the limits.

    .venv/bin/python scripts/benchmark.py [--bricks 200] [--rsdirs 4] [--per-rsdir 500]
                                          [--small-bricks 1000] [--ranks 2] [--repeat 3]
                                          [--compression-repeat 1] [--json OUT]

Everything is measured in one run on the same inputs and reported as ratios (absolute
times on a shared machine are noise). Productions are simulated once and cached under
--workdir. See docs/performance.md for what each figure means.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = sys.executable
CLI = [PYTHON, "-m", "obiwan_h5.cli"]
TASKS = [PYTHON, os.path.join(HERE, "benchmark_tasks.py")]
SUBSET_COLUMNS = ["ra", "dec", "obiwan_mask", "tractor_flux_g", "psql_g"]

# run a command as a child and print the largest RSS (KiB) of it or any of its descendants
RSS_WRAPPER = ("import resource, subprocess, sys; "
               "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def mpiexec(ranks):
    return ["mpiexec", "-n", str(ranks)]


def timed(command, repeat=1, before=None):
    """Best wall time of `repeat` runs of `command` (a list) or a callable."""
    best = float("inf")
    for _ in range(repeat):
        if before:
            before()
        # write back what earlier commands left dirty in the page cache, so that their
        # writeback is not charged to this command (it was: derive after legacy, ~40%)
        os.sync()
        start = time.perf_counter()
        if callable(command):
            command()
        else:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        best = min(best, time.perf_counter() - start)
    return best


def timed_in_turns(commands, repeat):
    """Best wall time of each command, run in turns (A B C A B C ...): a slow spell of a
    shared machine then hits every command alike instead of one of them."""
    best = [float("inf")] * len(commands)
    for _ in range(repeat):
        for index, command in enumerate(commands):
            if isinstance(command, tuple):
                command, before = command
                best[index] = min(best[index], timed(command, 1, before))
            else:
                best[index] = min(best[index], timed(command, 1))
    return best


def peak_rss_mb(command):
    result = subprocess.run([PYTHON, "-c", RSS_WRAPPER, *command], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    return int(result.stdout.split()[-1]) / 1024


def production(workdir, bricks, rsdirs, per_rsdir, seed=1):
    """A simulated production, reused when the same parameters were simulated before."""
    root = os.path.join(workdir, f"production-{bricks}x{rsdirs}x{per_rsdir}-s{seed}")
    if not os.path.exists(os.path.join(root, "bricks.txt")):
        print(f"simulating {bricks} bricks x {rsdirs} rsdirs x {per_rsdir} ...", flush=True)
        subprocess.run([*CLI, "simulate", "-o", root, "--n-bricks", str(bricks), "--rsdirs", str(rsdirs),
                        "--per-rsdir", str(per_rsdir), "--seed", str(seed), "--overwrite"], check=True,
                       stdout=subprocess.DEVNULL)
    return root


def derive_command(root, output, ranks, *extra):
    return [*mpiexec(ranks), *CLI, "derive", "--data-dir", root, "-o", output, "--overwrite", *extra]


# the resolution of the maps measured (the issue's: 3.4 arcmin pixels)
MAPS_NSIDE = 1024


def maps_command(derived, output):
    """`obiwan-h5 maps` of a derived file, one process (docs/maps.md)."""
    return [*CLI, "maps", derived, "-o", output, "--nside", str(MAPS_NSIDE), "--overwrite", "-q"]


def file_bytes(path):
    return os.path.getsize(path)


def plain_write_gbps(directory, nbytes):
    """Sequential write of `nbytes` to a new file in `directory`, synced at the end as derive's
    flushes sync its file (MPI_File_sync) before marking bricks done."""
    block = np.random.default_rng(0).integers(0, 255, 64 << 20, dtype=np.uint8).tobytes()
    path = os.path.join(directory, "plain-write.bin")

    def write():
        with open(path, "wb") as handle:
            left = nbytes
            while left > 0:
                handle.write(block[:min(left, len(block))])
                left -= len(block)
            handle.flush()
            os.fsync(handle.fileno())
    seconds = timed(write, repeat=3, before=lambda: os.path.exists(path) and os.remove(path))
    os.remove(path)
    return nbytes / seconds / 1e9


def read_subset_h5(path):
    with h5py.File(path, "r") as derived:
        return {name: derived["randoms"][name][:] for name in SUBSET_COLUMNS}


def read_subset_fits(path):
    import fitsio

    return fitsio.read(path, columns=SUBSET_COLUMNS)


def raw_subset_file(h5_path, raw_path):
    """The bytes of the subset columns, back to back in a plain file: the read floor."""
    columns = read_subset_h5(h5_path)
    with open(raw_path, "wb") as handle:
        for values in columns.values():
            handle.write(np.ascontiguousarray(values).tobytes())
    return sum(values.nbytes for values in columns.values())


def read_raw(path):
    with open(path, "rb") as handle:
        return handle.read()


def read_subset_parquet(path):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=SUBSET_COLUMNS)


def arrow_table(records):
    """The derived rows as a pyarrow Table, as an analyst would write them from memory
    (2-D columns as fixed-size lists, strings as UTF-8)."""
    import pyarrow as pa

    columns = {}
    for name in records.dtype.names:
        values = records[name]
        if values.ndim > 1:
            flat = pa.array(np.ascontiguousarray(values).reshape(-1))
            columns[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        elif values.dtype.kind == "S":
            columns[name] = pa.array(values.astype(str))
        else:
            columns[name] = pa.array(values)
    return pa.table(columns)


def table_in_memory(h5_path):
    """Every randoms column of the file as one record array (what fitsio writes from memory)."""
    with h5py.File(h5_path, "r") as derived:
        randoms = derived["randoms"]
        names = randoms.attrs["column_order"].split(",")
        data = {name: randoms[name][:] for name in names}
    # h5py tags bool dtypes with enum metadata that fitsio cannot hash: plain dtypes only
    records = np.empty(len(data[names[0]]), dtype=[(n, v.dtype.str, v.shape[1:]) for n, v in data.items()])
    for name, values in data.items():
        records[name] = values
    return records


def measure_update(workdir, out, args):
    """A production grown by 10 % new bricks, 2 % of its bricks rerun: `derive --update`
    from the derived file of the original bricks, against a full derive of the grown one and
    against its floor with the safe design: a plain copy of the old file (`copy_s`) plus a
    fresh derive of only the new and changed bricks (`derive_changed_s`)."""
    grown_bricks = max(args.bricks + 1, round(1.1 * args.bricks))
    source = production(workdir, grown_bricks, args.rsdirs, args.per_rsdir, seed=2)
    root = os.path.join(out, "grown")
    shutil.copytree(source, root)
    names = open(os.path.join(root, "bricks.txt")).read().split()
    original = os.path.join(out, "original.txt")
    with open(original, "w") as handle:
        handle.write("\n".join(names[:args.bricks]) + "\n")
    old = os.path.join(out, "old.h5")
    subprocess.run(derive_command(root, old, args.ranks, "--bricks", original), check=True, capture_output=True)
    import fitsio

    from obiwan_h5.production.layout import Production

    layout = Production(root)
    rerun = names[:max(1, round(0.02 * args.bricks))]
    for brick in rerun:  # rerun: new Tractor catalogs
        path = layout.tractor(brick, layout.rsdirs(brick)[0])
        data = fitsio.read(path)
        fitsio.write(path, data, clobber=True)
    changed = os.path.join(out, "changed.txt")
    with open(changed, "w") as handle:
        handle.write("\n".join(rerun + names[args.bricks:]) + "\n")
    updated, fresh = os.path.join(out, "updated.h5"), os.path.join(out, "grown.h5")
    copied, only_changed = os.path.join(out, "copied.h5"), os.path.join(out, "changed.h5")
    update = [*mpiexec(args.ranks), *CLI, "derive", "--data-dir", root, "-o", updated, "--update"]
    update_s, derive_grown_s, copy_s, copy_synced_s, derive_changed_s = timed_in_turns(
        [(update, lambda: shutil.copy(old, updated)), derive_command(root, fresh, args.ranks),
         (lambda: shutil.copyfile(old, copied), lambda: os.path.exists(copied) and os.remove(copied)),
         (lambda: synced_copy(old, copied), lambda: os.path.exists(copied) and os.remove(copied)),
         derive_command(root, only_changed, args.ranks, "--bricks", changed)], args.repeat)
    return {"update_s": update_s, "derive_grown_s": derive_grown_s, "grown_bricks": grown_bricks,
            "copy_s": copy_s, "derive_changed_s": derive_changed_s, "update_floor_s": copy_s + derive_changed_s,
            "copy_synced_s": copy_synced_s, "update_synced_floor_s": copy_synced_s + derive_changed_s,
            "changed_bricks": len(rerun) + len(names) - args.bricks}


def synced_copy(source, target):
    """A plain copy made durable (fsync), as an update's rows are before its bricks are
    marked done: the floor of an update that promises what derive promises."""
    shutil.copyfile(source, target)
    descriptor = os.open(target, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def measure_parquet(derived, out, records, args):
    """pyarrow writing the same table from memory (zstd) vs `obiwan-h5 export` to Parquet,
    and the same five columns read from Parquet beside the HDF5 read."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return {}
    from obiwan_h5.read.export_parquet import export_parquet

    table = arrow_table(records)
    plain, exported = os.path.join(out, "pyarrow.parquet"), os.path.join(out, "export.parquet")
    parquet_write_s, export_parquet_s = timed_in_turns(
        [lambda: pq.write_table(table, plain, compression="zstd"),
         lambda: export_parquet(derived, exported, overwrite=True)], args.repeat)
    subset_read_parquet_s, subset_read_h5_again_s = timed_in_turns(
        [lambda: read_subset_parquet(plain), lambda: read_subset_h5(derived)], 9)
    return {"parquet_write_s": parquet_write_s, "export_parquet_s": export_parquet_s,
            "subset_read_parquet_s": subset_read_parquet_s, "subset_read_h5_again_s": subset_read_h5_again_s,
            "parquet_zstd_bytes": file_bytes(plain)}


def measure_compression(root, out, args):
    """The compression study (`benchmark_compression.study`): size, derive or rewrite time
    and 5-column read of every choice, beside Parquet+zstd; the best h5py-readable choice
    is also reported at the top level for the targets against Parquet."""
    from benchmark_compression import study

    parquet = os.path.join(out, "pyarrow.parquet")
    found = study(root, out, args.ranks, args.compression_repeat, derive_command, SUBSET_COLUMNS,
                  parquet if os.path.exists(parquet) else None, levels=args.gzip_levels)
    results = {"compression": found}
    best = found["best"]
    if best is not None and "parquet_zstd" in found:
        row, parquet_row = found["choices"][best], found["parquet_zstd"]
        results.update(best_compression_bytes=row["bytes"], parquet_zstd_turns_bytes=parquet_row["bytes"],
                       subset_read_best_compression_s=row["read5_s"],
                       subset_read_parquet_turns_s=parquet_row["read5_s"])
    return results


def run(args):
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    out = os.path.join(workdir, "run")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    root = production(workdir, args.bricks, args.rsdirs, args.per_rsdir)
    root4 = production(workdir, 4 * args.bricks, args.rsdirs, args.per_rsdir) if args.rss else None
    derived = os.path.join(out, "derived.h5")
    results = {"bricks": args.bricks, "rsdirs": args.rsdirs, "per_rsdir": args.per_rsdir, "ranks": args.ranks}
    step = lambda name: print(f"measuring {name} ...", flush=True)  # noqa: E731

    legacy_dir = os.path.join(out, "legacy")
    step("derive_s, input_read_s, legacy_s (in turns)")
    results["derive_s"], results["input_read_s"], results["legacy_s"] = timed_in_turns([
        derive_command(root, derived, args.ranks),
        [*mpiexec(args.ranks), *TASKS, "read-inputs", root],
        ([*mpiexec(args.ranks), *TASKS, "legacy", root, legacy_dir],
         lambda: shutil.rmtree(legacy_dir, ignore_errors=True)),
    ], args.repeat)
    merged = os.path.join(legacy_dir, "merged.fits")
    with h5py.File(derived, "r") as handle:
        timings = json.loads(handle.attrs["timings_s"])
        results["rows"] = int(handle["bricks/count"][:].sum())
        nbytes = sum(handle["randoms"][name].id.get_storage_size() for name in handle["randoms"])
    results["derive_phases_s"] = timings
    results["plan_s"] = timings["plan"]  # of the last run: from the start of the job to its plan
    results["file_bytes"] = file_bytes(derived)
    results["write_gbps"] = nbytes / max(timings["write"], 1e-9) / 1e9
    step("disk_write_gbps")
    results["disk_write_gbps"] = plain_write_gbps(out, nbytes)

    step("subset reads")
    raw = os.path.join(out, "subset.raw")
    results["subset_bytes"] = raw_subset_file(derived, raw)
    results["subset_read_h5_s"], results["subset_read_fits_s"], results["subset_bytes_limit_s"] = timed_in_turns(
        [lambda: read_subset_h5(derived), lambda: read_subset_fits(merged), lambda: read_raw(raw)], 9)

    step("export_fits_s / fitsio_write_s (in turns)")
    import fitsio

    from obiwan_h5.read.export import export_fits

    exported, plain = os.path.join(out, "export.fits"), os.path.join(out, "fitsio.fits")
    records = table_in_memory(derived)
    results["export_fits_s"], results["fitsio_write_s"] = timed_in_turns(
        [lambda: export_fits(derived, exported, overwrite=True), lambda: fitsio.write(plain, records, clobber=True)],
        args.repeat)

    step(f"maps_s (nside {MAPS_NSIDE}, one process)")
    maps = os.path.join(out, "maps.fits")
    results["maps_s"] = timed(maps_command(derived, maps), args.repeat)

    step("parquet: write from memory, export, 5-column read (in turns)")
    results.update(measure_parquet(derived, out, records, args))
    if args.compression_repeat:
        step("compression: none and gzip derived (in turns), lzf and plugin filters rewritten; sizes, 5-column reads")
        results.update(measure_compression(root, out, args))

    if args.ranks >= 2:
        step("derive_1rank_s / derive_2rank_s (in turns)")
        results["derive_1rank_s"], results["derive_2rank_s"] = timed_in_turns(
            [derive_command(root, derived, 1), derive_command(root, derived, 2)], args.repeat)

    if args.small_bricks:
        step(f"derive_small_s, input_read_small_s ({args.small_bricks} bricks x 1 rsdir x 20, in turns)")
        small = production(workdir, args.small_bricks, 1, 20)
        derived_small = os.path.join(out, "derived-small.h5")
        results["derive_small_s"], results["input_read_small_s"] = timed_in_turns(
            [derive_command(small, derived_small, args.ranks), [*mpiexec(args.ranks), *TASKS, "read-inputs", small]],
            args.repeat)
        with h5py.File(derived_small, "r") as handle:
            results["derive_small_phases_s"] = json.loads(handle.attrs["timings_s"])
        os.remove(derived_small)

    step("update_s / derive_grown_s (in turns)")
    results.update(measure_update(workdir, out, args))

    if args.rss:
        step("derive_4n_1rank_s / derive_4n_s (4x the bricks, 1 rank and the same ranks, in turns)")
        derived4 = os.path.join(out, "derived4.h5")
        # best of 2: the first run also pages the 4N production's inputs into the cache, which
        # derive_s's runs had already done for theirs
        results["derive_4n_1rank_s"], results["derive_4n_s"] = timed_in_turns(
            [derive_command(root4, derived4, 1), derive_command(root4, derived4, args.ranks)], 2)
        step("peak RSS at N and 4N bricks")
        derived4 = os.path.join(out, "derived4.h5")
        results["derive_rss_mb_N"] = peak_rss_mb(derive_command(root, derived, args.ranks))
        results["derive_rss_mb_4N"] = peak_rss_mb(derive_command(root4, derived4, args.ranks))
        results["export_rss_mb_N"] = peak_rss_mb([*CLI, "export-fits", derived, "-o", exported, "--overwrite"])
        results["export_rss_mb_4N"] = peak_rss_mb([*CLI, "export-fits", derived4, "-o", exported, "--overwrite"])
        results["maps_rss_mb_N"] = peak_rss_mb(maps_command(derived, maps))
        results["maps_rss_mb_4N"] = peak_rss_mb(maps_command(derived4, maps))

    results["ratios"] = ratios(results)
    return results


TARGETS = {
    "legacy_s / derive_s": (">=", 6),
    "derive_s / input_read_s": ("<=", 2.0),
    "write_gbps / disk_write_gbps": (">=", 0.5),
    "subset_read_fits_s / subset_read_h5_s": (">=", 10),
    "subset_read_h5_s / subset_bytes_limit_s": ("<=", 1.5),
    "export_fits_s / fitsio_write_s": ("<=", 1.0),
    "derive_1rank_s / derive_2rank_s": (">=", 1.7),
    "derive_4n_1rank_s / derive_4n_s": (">=", 1.7),
    "derive_small_s / input_read_small_s": ("<=", 2.0),
    "update_s / update_floor_s": ("<=", 1.5),
    "subset_read_h5_again_s / subset_read_parquet_s": ("<=", 1.0),
    "export_parquet_s / parquet_write_s": ("<=", 1.3),
    "best_compression_bytes / parquet_zstd_turns_bytes": ("<=", 1.0),
    "subset_read_best_compression_s / subset_read_parquet_turns_s": ("<=", 1.0),
    "derive_4n_s / derive_s": ("<=", 4.2),
    "derive_rss_mb_4N / derive_rss_mb_N": ("<=", 1.2),
    "export_rss_mb_4N / export_rss_mb_N": ("<=", 1.2),
    "maps_s / derive_s": ("<=", 1.0),
    "maps_rss_mb_4N / maps_rss_mb_N": ("<=", 1.2),
}


# ratios shown beside the targets, without one of their own
INFORMATION = ("update_s / update_synced_floor_s",)


def ratios(results):
    out = {}
    for name in [*TARGETS, *INFORMATION]:
        top, bottom = (part.strip() for part in name.split("/"))
        if top not in results or bottom not in results:
            continue
        value = results[top] / results[bottom]
        entry = {"value": round(value, 3), "target": None, "met": None}
        if name in TARGETS:
            sense, target = TARGETS[name]
            entry.update(target=f"{sense} {target}", met=bool(value >= target if sense == ">=" else value <= target))
        out[name] = entry
    return out


def report(results):
    print(f"\nproduction: {results['bricks']} bricks x {results['rsdirs']} rsdirs x {results['per_rsdir']}"
          f" = {results['rows']} rows, {results['file_bytes'] / 1e6:.0f} MB; {results['ranks']} ranks")
    print("\nmeasurements")
    for key, value in results.items():
        if isinstance(value, float):
            print(f"  {key:<24}{value:>12.3f}")
    print(f"  {'derive phases (s)':<24}{json.dumps(results['derive_phases_s'])}")
    if "derive_small_phases_s" in results:
        print(f"  {'small derive phases (s)':<24}{json.dumps(results['derive_small_phases_s'])}")
    if "compression" in results:
        study = results["compression"]
        print(f"\ncompression (medians of {study['turns']} turns, reads of {study['reads']}; best: {study['best']})")
        for name, row in study["choices"].items():
            made = f"derive {row['derive_s']:.2f} s" if "derive_s" in row else f"rewrite {row['rewrite_s']:.2f} s"
            print(f"  {name:<22}{row['bytes'] / 1e6:>8.1f} MB  x{row['size_vs_none']:.2f}  read5 "
                  f"{row['read5_s'] * 1e3:7.1f} ms  (obiwan_h5.open {row['read5_api_s'] * 1e3:7.1f} ms)  {made}")
        if "parquet_zstd" in study:
            row = study["parquet_zstd"]
            print(f"  {'parquet+zstd':<22}{row['bytes'] / 1e6:>8.1f} MB          read5 {row['read5_s'] * 1e3:7.1f} ms")
    print("\nratios")
    for name, entry in results["ratios"].items():
        if entry["target"] is None:
            print(f"  info {name:<44}{entry['value']:>9.3f}   (no target)")
            continue
        mark = "ok " if entry["met"] else "MISS"
        print(f"  {mark} {name:<44}{entry['value']:>9.3f}   target {entry['target']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--bricks", type=int, default=200)
    parser.add_argument("--rsdirs", type=int, default=4)
    parser.add_argument("--per-rsdir", type=int, default=500)
    parser.add_argument("--small-bricks", type=int, default=1000, metavar="N",
                        help="bricks of the production of small bricks (1 rsdir x 20 injections) whose derive is "
                             "compared with reading its inputs (0 skips it)")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs for the main timings")
    parser.add_argument("--compression-repeat", type=int, default=1, metavar="N",
                        help="turns of the compression study's derives and rewrites, medians reported; 1 keeps "
                             "the whole benchmark under 12 minutes, docs/performance.md used 3 (0 skips the study)")
    parser.add_argument("--gzip-levels", type=lambda text: tuple(int(x) for x in text.split(",")), default=(1, 4),
                        metavar="L,L", help="gzip levels the compression study derives (default 1,4; "
                                            "docs/performance.md also used 6, which alone takes minutes)")
    parser.add_argument("--no-rss", dest="rss", action="store_false", help="skip the 4N-brick memory runs")
    parser.add_argument("--workdir", default=os.path.join(os.getcwd(), "benchmark-work"))
    parser.add_argument("--json", help="write every figure and ratio to this file")
    args = parser.parse_args(argv)
    results = run(args)
    report(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
