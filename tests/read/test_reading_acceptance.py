"""The reading issue's acceptance points, on simulated productions of both schemas."""

import os

import fitsio
import numpy as np
import pytest

import obiwan_h5
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.read.export import export_fits
from obiwan_h5.read.view import make_view


@pytest.fixture(scope="module")
def dr3_derived(dr3_production, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("dr3derived") / "derived.h5")
    derive(DeriveOptions(dr3_production, output), SerialComm())
    return output


@pytest.mark.parametrize("schema", ["dr5", "dr3"])
def test_fits_export_equals_the_reader_for_every_column(schema, dr5_derived, dr3_derived, tmp_path):
    path = dr5_derived if schema == "dr5" else dr3_derived
    output = str(tmp_path / "all.fits")
    export_fits(path, output, batch_rows=97)  # several batches, one of them partial
    with obiwan_h5.open(path) as derived:
        columns = derived.columns
        expected = derived.read(columns, as_="numpy")
    assert any(np.asarray(expected[name]).ndim == 2 for name in columns)
    for name in columns:
        got = fitsio.read(output, columns=[name])[name]
        want = expected[name]
        if want.dtype.kind == "S":  # fitsio returns text columns as str
            got = np.char.encode(got, "ascii") if got.dtype.kind == "U" else got
        assert got.shape == want.shape, name
        assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f"), name


def test_a_five_column_view_is_small_whatever_the_input(dr5_derived, dr3_derived, tmp_path):
    columns = "unique_id,ra,dec,obiwan_mask,targets_mask"
    sizes = []
    for index, path in enumerate((dr5_derived, dr3_derived)):
        view = str(tmp_path / f"view{index}.h5")
        make_view(path, view, columns)
        sizes.append(os.path.getsize(view))
        with obiwan_h5.open(view) as through_view, obiwan_h5.open(path) as direct:
            a = through_view.read(columns, as_="numpy")
            b = direct.read(columns, as_="numpy")
        assert all(np.array_equal(a[name], b[name]) for name in a)
    assert os.path.getsize(dr5_derived) != os.path.getsize(dr3_derived)
    assert max(sizes) < 1 << 20 and abs(sizes[0] - sizes[1]) < 4096
