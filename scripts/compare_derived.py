#!/usr/bin/env python
"""Compare every dataset of the randoms, summary and bricks groups of derived files.

    python scripts/compare_derived.py A.h5 B.h5 [C.h5 ...]

Exit 0 when every file equals the first (values, dtypes, shapes; NaN equals NaN), else 1
with one line per difference. Used to check that rank counts do not change the data.
"""

import sys

import h5py
import numpy as np

GROUPS = ("randoms", "summary", "bricks")


def differences(reference, candidate):
    problems = []
    with h5py.File(reference, "r") as ref, h5py.File(candidate, "r") as got:
        for group in GROUPS:
            names = sorted(set(ref[group]) | set(got[group]))
            for name in names:
                if name not in ref[group] or name not in got[group]:
                    problems.append(f"{group}/{name}: only in one file")
                    continue
                a, b = ref[group][name][:], got[group][name][:]
                if a.dtype != b.dtype or a.shape != b.shape:
                    problems.append(f"{group}/{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
                elif not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                    problems.append(f"{group}/{name}: values differ")
    return problems


def main(paths):
    if len(paths) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = False
    for path in paths[1:]:
        problems = differences(paths[0], path)
        for problem in problems:
            print(f"{path}: {problem}")
        if not problems:
            with h5py.File(path, "r") as derived:
                count = sum(len(derived[group]) for group in GROUPS)
            print(f"{path}: equal to {paths[0]} ({count} datasets)")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
