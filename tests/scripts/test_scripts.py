"""The scripts of `scripts/` still run against the package as it is now: a rename in the
package must not leave `make benchmark` or the comparison scripts broken."""

import json
import math
import os
import shutil
import subprocess
import sys

import h5py
import pytest

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts")
sys.path.insert(0, SCRIPTS)
from benchmark import TARGETS  # noqa: E402


def _script(name, *args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_benchmark_measures_every_figure_on_a_tiny_production(tmp_path):
    """Every measurement of the benchmark runs (2 ranks, every study), and every ratio
    that docs/performance.md reports comes out as a finite number."""
    output = tmp_path / "bench.json"
    run = _script("benchmark.py", "--bricks", 2, "--rsdirs", 2, "--per-rsdir", 10, "--small-bricks", 3,
                  "--repeat", 1, "--gzip-levels", 1, "--workdir", tmp_path / "work", "--json", output, timeout=400)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    ratios = json.loads(output.read_text())["ratios"]
    assert set(TARGETS) <= set(ratios), set(TARGETS) - set(ratios)
    assert all(math.isfinite(ratios[name]["value"]) for name in TARGETS)


def test_compare_derived_finds_a_changed_value_and_nothing_else(dr5_derived, tmp_path):
    same, changed = tmp_path / "same.h5", tmp_path / "changed.h5"
    shutil.copy(dr5_derived, same)
    shutil.copy(dr5_derived, changed)
    assert _script("compare_derived.py", dr5_derived, same).returncode == 0
    with h5py.File(changed, "r+") as handle:
        handle["randoms/psql_g"][3] += 1
    run = _script("compare_derived.py", dr5_derived, changed)
    assert run.returncode == 1
    assert [line for line in run.stdout.splitlines() if "psql_g" in line] and "tractor_" not in run.stdout
