"""tests/mpi runs only under mpiexec with at least two ranks: a plain ``pytest`` (or ``pytest
tests``) does not collect it, and naming it on one process is refused with a clear error
rather than passing with its checks weakened. Checked on a copy of the two conftest files
with one trivial test on each side, so that no real test module is imported."""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    (root / "tests" / "mpi").mkdir(parents=True)
    shutil.copy(os.path.join(HERE, "conftest.py"), root / "tests" / "conftest.py")
    shutil.copy(os.path.join(HERE, "mpi", "conftest.py"), root / "tests" / "mpi" / "conftest.py")
    (root / "tests" / "test_serial.py").write_text("def test_serial():\n    assert True\n")
    (root / "tests" / "mpi" / "test_parallel.py").write_text("def test_parallel():\n    assert True\n")
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    return root


def _pytest(root, *args):
    # without the plugins of the real suite, which cost seconds to import
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:xdist",
               "--collect-only", "-q", *args]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [(), ("tests",)], ids=["pytest", "pytest tests"])
def test_a_plain_pytest_does_not_collect_tests_mpi(suite, args):
    run = _pytest(suite, *args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tests/test_serial.py::test_serial" in run.stdout
    assert "test_parallel" not in run.stdout and "1 test collected" in run.stdout


@pytest.mark.parametrize("target", ["tests/mpi", "tests/mpi/test_parallel.py::test_parallel"])
def test_tests_mpi_on_one_process_is_refused(suite, target):
    run = _pytest(suite, target)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert "tests/mpi needs at least 2 MPI ranks, got 1: run it under mpiexec" in run.stderr
    assert "test_parallel" not in run.stdout
