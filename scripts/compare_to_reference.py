#!/usr/bin/env python
"""Derive the same productions with another checkout of obiwan_h5 and with this one, and
compare the files dataset by dataset and attribute by attribute (`compare_derived.py`).

    python scripts/compare_to_reference.py --reference ../main --workdir /tmp/compare \\
        [--ranks 1,2,3] [--productions dr5,dr3,mixed,update,benchmark]

For a change that must not change the files (a faster derive, a new layout of the code):
the reference checkout derives each production on one rank, this checkout on every rank
count of ``--ranks``, and every file must equal the reference. The productions:

- ``dr5``, ``dr3``: small simulated productions of both Tractor schemas;
- ``mixed``: rsdirs of one brick that differ: catalogs without ``brick_primary``, without
  the masks, without a depth column or with fewer columns, rsdir names of several widths,
  a brick without rows and a brick that fails;
- ``update``: the ``dr5`` production grown by two bricks, one brick rerun and one removed,
  updated by this checkout from the reference's file of the original bricks, against the
  reference's fresh derive of the new list;
- ``benchmark``: the default production of `benchmark.py` (200 bricks x 4 x 500).
"""

import argparse
import os
import shutil
import subprocess
import sys

import fitsio

HERE = os.path.dirname(os.path.abspath(__file__))
THIS = os.path.dirname(HERE)
SIMULATED = {
    "dr5": ["--n-bricks", "6", "--rsdirs", "2", "--per-rsdir", "150", "--seed", "7"],
    "dr3": ["--n-bricks", "3", "--rsdirs", "2", "--per-rsdir", "120", "--seed", "11", "--schema", "dr3"],
    "mixed": ["--n-bricks", "8", "--rsdirs", "rs0,skip_rs3,more_rs12,more_skip_rs104", "--per-rsdir", "90",
              "--seed", "5"],
    "benchmark": ["--n-bricks", "200", "--rsdirs", "4", "--per-rsdir", "500", "--seed", "1"],
}


def run(command, checkout, ranks=1):
    """`obiwan-h5 command` with the code of `checkout`: run from the root directory, since
    ``python -m`` imports from the current directory before PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=checkout)
    launcher = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    result = subprocess.run(launcher + [sys.executable, "-m", "obiwan_h5.cli", *command], env=env,
                            capture_output=True, text=True, cwd="/")
    if result.returncode not in (0, 1):  # 1: some brick failed, which the mixed production wants
        raise RuntimeError(f"{' '.join(command)} ({checkout}) failed:\n{result.stderr[-3000:]}")


def simulate(workdir, name, reference):
    root = os.path.join(workdir, name)
    if not os.path.exists(os.path.join(root, "bricks.txt")):
        run(["simulate", "-o", root, "--overwrite", "-q", *SIMULATED["dr5" if name == "update" else name]], reference)
        if name == "mixed":
            _mix(root)
    return root


def _rewrite(path, keep):
    data = fitsio.read(path)
    fitsio.write(path, data[[name for name in data.dtype.names if keep(name.lower())]], clobber=True)


def _mix(root):
    """Rsdirs that lack what some selections and summaries use, one brick without rows, one
    that fails (a column of another type in one rsdir)."""
    sys.path.insert(0, THIS)
    from obiwan_h5.production.layout import Production

    layout = Production(root)
    bricks = open(os.path.join(root, "bricks.txt")).read().split()
    rsdirs = layout.rsdirs(bricks[0])
    _rewrite(layout.tractor(bricks[0], rsdirs[1]), lambda name: name != "brick_primary")
    _rewrite(layout.tractor(bricks[1], rsdirs[0]), lambda name: not name.startswith("anymask"))
    _rewrite(layout.tractor(bricks[2], rsdirs[2]), lambda name: not name.startswith(("anymask", "allmask")))
    _rewrite(layout.tractor(bricks[3], rsdirs[3]), lambda name: name != "psfdepth_z")
    _rewrite(layout.tractor(bricks[4], rsdirs[1]), lambda name: not name.startswith(("wise", "fracin")))
    for rsdir in rsdirs:  # no injected source touched a CCD
        data = fitsio.read(layout.ids_added(bricks[5], rsdir))
        fitsio.write(layout.ids_added(bricks[5], rsdir), data[:0], clobber=True)
    data = fitsio.read(layout.tractor(bricks[6], rsdirs[0]))
    retyped = data.astype([(name, "f4" if name.lower() == "nobs_g" else data.dtype[name]) for name in data.dtype.names])
    fitsio.write(layout.tractor(bricks[6], rsdirs[0]), retyped, clobber=True)


def derive(root, output, checkout, ranks=1, *extra):
    run(["derive", "--data-dir", root, "-o", output, "--overwrite", *extra], checkout, ranks)
    return output


def compare(reference, candidates, *options):
    result = subprocess.run([sys.executable, os.path.join(HERE, "compare_derived.py"), *options, reference,
                             *candidates], capture_output=True, text=True)
    print(result.stdout, end="", flush=True)
    return result.returncode == 0


def check_update(workdir, reference, ranks):
    """This checkout updates the reference's file of the original bricks; the reference
    derives the new list afresh."""
    from obiwan_h5.production.layout import Production

    source = simulate(workdir, "update", reference)
    root = os.path.join(workdir, "update-grown")
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source, root)
    bricks = open(os.path.join(root, "bricks.txt")).read().split()
    old_list, new_list = os.path.join(workdir, "update-old.txt"), os.path.join(workdir, "update-new.txt")
    open(old_list, "w").write("\n".join(bricks[:4]) + "\n")
    open(new_list, "w").write("\n".join(bricks[1:]) + "\n")  # one removed, two added
    ok = True
    for count in ranks:
        old = derive(root, os.path.join(workdir, f"update-old-{count}.h5"), reference, 1, "--bricks", old_list)
        layout = Production(root)
        path = layout.tractor(bricks[2], layout.rsdirs(bricks[2])[0])  # rerun: same rows, new file
        fitsio.write(path, fitsio.read(path), clobber=True)
        run(["derive", "--data-dir", root, "-o", old, "--bricks", new_list, "--update"], THIS, count)
        fresh = derive(root, os.path.join(workdir, f"update-fresh-{count}.h5"), reference, 1, "--bricks", new_list)
        ok &= compare(fresh, [old], "--ignore", "update_history")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--reference", required=True, help="checkout of the reference code (its root directory)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--ranks", default="1,2,3")
    parser.add_argument("--productions", default="dr5,dr3,mixed,update,benchmark")
    args = parser.parse_args(argv)
    reference = os.path.abspath(args.reference)
    args.workdir = os.path.abspath(args.workdir)
    ranks = [int(count) for count in args.ranks.split(",")]
    os.makedirs(args.workdir, exist_ok=True)
    ok = True
    for name in args.productions.split(","):
        print(f"{name}:", flush=True)
        if name == "update":
            ok &= check_update(args.workdir, reference, ranks)
            continue
        root = simulate(args.workdir, name, reference)
        expected = derive(root, os.path.join(args.workdir, f"{name}-reference.h5"), reference)
        ok &= compare(expected, [derive(root, os.path.join(args.workdir, f"{name}-{count}.h5"), THIS, count)
                                 for count in ranks])
        for count in ranks:
            os.remove(os.path.join(args.workdir, f"{name}-{count}.h5"))
    print("every file equals the reference" if ok else "DIFFERENCES (above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
