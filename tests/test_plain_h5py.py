"""With a plain h5py from the package index (no MPI, no mpi4py): simulate, a 1-process
derive, info, validate, export and plot all work (docs/install.md).

The test builds its own virtual environment from binary wheels, so it also proves that
nothing in those paths needs a parallel build.
"""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
WHEELS = ["h5py", "numpy", "scipy", "astropy", "fitsio", "matplotlib", "tqdm"]


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("plain-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    # binary wheels only: the index's h5py is built without MPI
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--only-binary=:all:", *WHEELS],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    return python


def _run(python, *args, cwd):
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("OBIWAN_H5_", "PYTHON"))}
    environment["PYTHONPATH"] = ROOT  # the package from this checkout, without installing it
    return subprocess.run([python, "-m", "obiwan_h5.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=300)


def test_everything_but_a_parallel_derive_works_with_a_plain_h5py(plain_python, tmp_path):
    probe = subprocess.run([plain_python, "-c", "import h5py, importlib.util; "
                            "print(h5py.get_config().mpi, importlib.util.find_spec('mpi4py') is not None)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == ["False", "False"], probe.stdout + probe.stderr
    steps = [
        ("simulate", "-o", "production", "--n-bricks", "2", "--rsdirs", "1", "--per-rsdir", "60", "-q"),
        ("derive", "--data-dir", "production", "-o", "derived.h5", "-q"),
        ("info", "derived.h5"),
        ("validate", "-q", "derived.h5"),
        ("export", "derived.h5", "-o", "derived.fits", "--summary", "-q"),
        ("plot", "derived.h5", "-o", "figures", "--only", "recovery,confusion", "-q"),
    ]
    for step in steps:
        result = _run(plain_python, *step, cwd=tmp_path)
        assert result.returncode == 0, f"{' '.join(step)}:\n{result.stderr[-2000:]}"
    assert (tmp_path / "derived.fits").stat().st_size > 0
    assert (tmp_path / "figures" / "recovery.png").stat().st_size > 0
    check = subprocess.run([plain_python, "-c", "import h5py; f = h5py.File('derived.h5', 'r'); "
                            "print(bool(f.attrs['complete']), len(f['bricks/status']), int(f['bricks/count'][:].sum()),"
                            " len(f['randoms/ra']))"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    complete, bricks, counted, rows = check.stdout.split()
    assert complete == "True" and bricks == "2" and int(counted) == int(rows) > 0, check.stdout + check.stderr
