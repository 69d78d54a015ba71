"""The options of derive: one frozen record named as the flags, checked in one place, its
output checked as every command's, its former keywords still working."""

import ast
import dataclasses
import os
import warnings

import pytest

import obiwan_h5.job.options as options_module
from obiwan_h5.errors import InputError
from obiwan_h5.job import DeriveOptions
from obiwan_h5.job.options import MAX_CALL_BYTES


def test_former_keywords_still_work_with_a_warning(tmp_path):
    with pytest.warns(DeprecationWarning) as caught:
        old = DeriveOptions(str(tmp_path), str(tmp_path / "o.h5"), max_memory_mb=3, alignment=(1024, 4096))
    assert sorted(str(w.message) for w in caught) == [
        "DeriveOptions(): the keyword 'alignment' is deprecated; use 'align'",
        "DeriveOptions(): the keyword 'max_memory_mb' is deprecated; use 'max_memory'"]
    assert [w.filename for w in caught] == [__file__, __file__]  # shown: attributed to the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = DeriveOptions(str(tmp_path), str(tmp_path / "o.h5"), max_memory=3, align=(1024, 4096))
    assert old == new and new.max_memory == 3 and new.alignment == (1024, 4096)
    with pytest.raises(TypeError, match="both 'max_memory_mb' and its new name 'max_memory'"):
        DeriveOptions(str(tmp_path), "o.h5", max_memory_mb=1, max_memory=2)


def test_options_are_frozen_and_normalised(tmp_path):
    options = DeriveOptions(str(tmp_path), "o.h5", bricks=["0002p000", "0001p000", "0001p000"], align=4096,
                            mpi_info=["romio_cb_write=enable", "striping_unit=1048576"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.match_radius = 2.0
    assert options.output == os.path.abspath("o.h5") and options.randoms == str(tmp_path / "randoms.fits")
    assert options.bricks == "0001p000,0002p000"
    assert options.alignment == (4096, 4096) and DeriveOptions(str(tmp_path), "o.h5").alignment is None
    assert options.mpi_info == {"romio_cb_write": "enable", "striping_unit": "1048576"}
    assert options.writer_options == {"mpi_info": options.mpi_info, "alignment": (4096, 4096),
                                      "max_call_bytes": MAX_CALL_BYTES}
    # made again from its own fields, the same options
    assert dataclasses.replace(options) == options


def test_a_hint_that_is_not_key_value_is_refused_when_made(tmp_path):
    with pytest.raises(InputError) as refused:
        DeriveOptions(str(tmp_path), "o.h5", mpi_info=["romio_cb_write"])
    assert str(refused.value) == "`mpi_info` 'romio_cb_write': expected KEY=VALUE"


def test_check_raises_what_it_refuses(tmp_path):
    """`check` raises the package's error (it once returned the reason)."""
    for given, words in [({"match_radius": 0}, "`match_radius` 0.0: must be a positive number of arcsec"),
                         ({"max_memory": 0}, "`max_memory` 0: must be positive"),
                         ({"align": -4}, "`align` -4: must be positive"),
                         ({"resume": True, "overwrite": True}, "`resume` and `overwrite` exclude each other")]:
        with pytest.raises(InputError) as refused:
            DeriveOptions(str(tmp_path), str(tmp_path / "o.h5"), **given).check()
        assert str(refused.value).startswith(words), refused.value


@pytest.fixture
def production_dir(tmp_path):
    """The inputs `check` reads whole, empty: enough for it to reach the output."""
    (tmp_path / "dr").mkdir()
    for name in ("randoms.fits", "survey-bricks.fits", "bricks.txt"):
        (tmp_path / name).write_text("")
    return tmp_path


def test_the_output_is_checked_as_every_command_checks_it(production_dir, tmp_path_factory):
    """Derive's output check is `outputs.check_output`: a FIFO or a name too long for the
    file system is refused before anything runs, as the reading commands refuse them."""
    out = tmp_path_factory.mktemp("out")
    fifo = out / "fifo.h5"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="fifo.h5: exists and is not a regular file"):
        DeriveOptions(str(production_dir), str(fifo), overwrite=True).check()
    with pytest.raises(InputError, match="more than the .* this file system allows"):
        DeriveOptions(str(production_dir), str(out / ("x" * 300 + ".h5"))).check()
    linked = out / "randoms-again.fits"
    os.link(production_dir / "randoms.fits", linked)  # the truth table under another name
    with pytest.raises(InputError, match=r"randoms-again.fits: is an input of the job \(.*randoms.fits\)"):
        DeriveOptions(str(production_dir), str(linked), overwrite=True).check()
    (out / "done.h5").write_text("")
    with pytest.raises(InputError) as refused:
        DeriveOptions(str(production_dir), str(out / "done.h5")).check()
    assert str(refused.value) == (f"{out / 'done.h5'}: exists; use `overwrite` to replace it, `resume` to complete "
                                  "it or `update` to add new and changed bricks")
    DeriveOptions(str(production_dir), str(out / "new.h5")).check()  # a good one passes


def test_the_options_module_loads_neither_the_writer_nor_h5py():
    """It takes no constant from the writer (which loads h5py): the default of
    `max_call_bytes` is the options' own."""
    tree = ast.parse(open(options_module.__file__, encoding="utf-8").read())
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.endswith("writer") or name.split(".")[0] == "h5py"}, imported


def test_the_recorded_inputs_keep_their_names_and_order(tmp_path):
    """A file's ``inputs`` attribute, which `resume` and `update` compare, is as every
    earlier version wrote it."""
    assert list(DeriveOptions(str(tmp_path), "o.h5").recorded_inputs()) == [
        "data_dir", "randoms", "dr_dir", "survey_bricks", "bricks", "objtype", "expect_rsdirs", "match_radius_arcsec",
        "keep_all_apflux", "compression"]
    found = DeriveOptions(str(tmp_path), "o.h5", randoms_db="password=x", randoms_table="t", compression="gzip",
                          shuffle=False, match_radius=0.5).recorded_inputs()
    assert list(found)[-2:] == ["randoms_db", "randoms_table"]
    assert found["randoms"] is None and "x" not in found["randoms_db"]
    assert found["compression"] == "gzip-1" and found["match_radius_arcsec"] == 0.5
