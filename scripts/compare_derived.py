#!/usr/bin/env python
"""Compare derived files dataset by dataset and attribute by attribute.

    python scripts/compare_derived.py [--datasets-only] [--ignore NAME] A.h5 B.h5 [C.h5 ...]

Exit 0 when every file equals the first, else 1 with one line per difference: every
dataset of the randoms, summary and bricks groups (values, dtypes, shapes; NaN equals NaN)
and every attribute of the file, its groups and its datasets, except the ones that record
how and when a file was made (`PROVENANCE`: time, command line, rank count, timings).
``--datasets-only`` leaves the file's own attributes out (files derived from other inputs
that must give the same rows, e.g. truth from a file and from PostgreSQL); ``--ignore NAME``
one more root attribute (``update_history``: an updated file against a fresh derive).
Used to check that rank counts, and changes to the code that should not change the data,
do not change the data.
"""

import json
import sys

import h5py
import numpy as np

GROUPS = ("randoms", "summary", "bricks")
# root attributes that describe the run, not the data
PROVENANCE = frozenset({"creation_time", "command_line", "nranks", "elapsed_s", "timings_s", "peak_rss_mb"})


def _attrs(node, skip=()):
    found = {}
    for name, value in node.attrs.items():
        if name in skip:
            continue
        if isinstance(value, bytes):
            value = value.decode()
        if name == "update_history":  # when each update ran is provenance, what it did is not
            value = json.dumps([{key: entry[key] for key in entry if key != "time"} for entry in json.loads(value)])
        found[name] = np.asarray(value).tolist() if isinstance(value, np.ndarray) else value
    return found


def differences(reference, candidate, file_attributes=True, ignore=()):
    problems = []
    skip = PROVENANCE | set(ignore)
    with h5py.File(reference, "r") as ref, h5py.File(candidate, "r") as got:
        if file_attributes and _attrs(ref, skip) != _attrs(got, skip):
            a, b = _attrs(ref, skip), _attrs(got, skip)
            names = sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))
            problems.append(f"file attributes differ: {', '.join(names)}")
        for group in GROUPS:
            if _attrs(ref[group]) != _attrs(got[group]):
                problems.append(f"{group}: group attributes differ")
            names = sorted(set(ref[group]) | set(got[group]))
            for name in names:
                if name not in ref[group] or name not in got[group]:
                    problems.append(f"{group}/{name}: only in one file")
                    continue
                a, b = ref[group][name], got[group][name]
                if _attrs(a) != _attrs(b):
                    problems.append(f"{group}/{name}: attributes differ")
                a, b = a[:], b[:]
                if a.dtype != b.dtype or a.shape != b.shape:
                    problems.append(f"{group}/{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
                elif not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                    problems.append(f"{group}/{name}: values differ")
    return problems


def main(arguments):
    ignore, paths, file_attributes, arguments = [], [], True, list(arguments)
    while arguments:
        argument = arguments.pop(0)
        if argument == "--ignore" and arguments:
            ignore.append(arguments.pop(0))
        elif argument == "--datasets-only":
            file_attributes = False
        else:
            paths.append(argument)
    if len(paths) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = False
    for path in paths[1:]:
        problems = differences(paths[0], path, file_attributes, ignore)
        for problem in problems:
            print(f"{path}: {problem}")
        if not problems:
            with h5py.File(path, "r") as derived:
                count = sum(len(derived[group]) for group in GROUPS)
            print(f"{path}: equal to {paths[0]} ({count} datasets and their attributes)")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
