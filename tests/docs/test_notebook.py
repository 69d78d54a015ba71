"""docs/analysis.ipynb is a valid notebook whose code runs, in order, on a derived file.

The code cells are run as one script by a fresh interpreter (no Jupyter kernel needed), in a
``docs/`` directory beside a ``demo/derived.h5`` that is the session's small derived file,
as the notebook finds the demo's file when opened from the repository's docs/.
"""

import os
import subprocess
import sys

import fitsio
import h5py
import nbformat
import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NOTEBOOK = os.path.join(ROOT, "docs", "analysis.ipynb")


def code_cells(notebook):
    return ["".join(cell.source) for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_is_valid_nbformat_4_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert all(not cell.outputs and cell.execution_count is None
               for cell in notebook.cells if cell.cell_type == "code"), "store the notebook without outputs"
    # plain Python only: the cells are also run as one script
    for source in code_cells(notebook):
        assert not any(line.lstrip().startswith(("%", "!")) for line in source.splitlines())


@pytest.fixture(scope="module")
def notebook_run(dr5_derived, tmp_path_factory):
    """Run the notebook's code cells in order; return (working directory, stdout)."""
    base = tmp_path_factory.mktemp("notebook")
    (base / "demo").mkdir()
    os.symlink(dr5_derived, base / "demo" / "derived.h5")
    workdir = base / "docs"
    workdir.mkdir()
    script = workdir / "notebook.py"
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    script.write_text("\n\n".join(code_cells(notebook)), encoding="utf-8")
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"notebook failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return workdir, result.stdout


def test_notebook_recovered_fraction_is_the_files(notebook_run, dr5_derived):
    _, stdout = notebook_run
    with h5py.File(dr5_derived, "r") as derived:
        done = np.repeat(derived["bricks/status"][:] == 1, derived["bricks/count"][:])
        recovered = (derived["randoms/obiwan_mask"][:][done] & 1) == 1
    assert f"recovered fraction: {recovered.mean():.4f} of {done.sum()} rows" in stdout


def test_notebook_draws_the_figure(notebook_run):
    workdir, _ = notebook_run
    with open(workdir / "recovery_vs_depth.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_notebook_sample_holds_every_row_of_its_bricks(notebook_run, dr5_derived):
    workdir, stdout = notebook_run
    sample = fitsio.read(str(workdir / "sample.fits"), ext="SAMPLE")
    header = fitsio.read_header(str(workdir / "sample.fits"), ext="SAMPLE")
    with h5py.File(dr5_derived, "r") as derived:
        names = derived["bricks/name"][:].astype(str)
        offset, count = derived["bricks/offset"][:], derived["bricks/count"][:]
        status = derived["bricks/status"][:]
        chosen = sorted(set(sample["brickname"].astype(str)))
        expected = np.concatenate([derived["randoms/unique_id"][offset[i]:offset[i] + count[i]]
                                   for i in np.flatnonzero(np.isin(names, chosen))])
    assert all(status[names == brick][0] == 1 for brick in chosen)
    assert 1 <= len(chosen) < len(names)
    assert np.array_equal(sample["unique_id"], expected.astype(sample["unique_id"].dtype))
    assert f"wrote sample.fits: {len(sample)} rows from {len(chosen)} bricks" in stdout
    units = {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}") for i in range(1, header["TFIELDS"] + 1)}
    assert units["tractor_flux_g"] == "nanomaggy" and units["psql_g"] == "mag"
