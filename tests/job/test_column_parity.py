"""Column parity with the old derived tables (issue 15).

`tests/data/old_columns_<dr>.txt` lists the columns the old `derived_tables.py` /
`merge_tables.py` wrote, from the old code's rules applied to the simulator's schemas.
A fresh derive must have every old column, or the difference must be one of the rows of
the table in docs/migration.md that the allow-lists below mirror.
"""

import os

import h5py
import pytest

from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
MIGRATION = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "migration.md")

# old column -> its new name (None: dropped on purpose); each is a row of docs/migration.md
OLD_ONLY = {
    "randoms": {
        "tractor_decam_apflux_ivar": None,  # DR3: kept by the old prefix rule only; --keep-all-apflux
    },
    "summary": {
        "n_inj_elg_ngc": "n_true_eboss_ngc",
        "n_inj_elg_sgc": "n_true_eboss_sgc",
        "n_inj_elg_trac_elg_ngc": "n_true_rec_meas_eboss_ngc",
        "n_inj_elg_trac_elg_sgc": "n_true_rec_meas_eboss_sgc",
        "n_inj_elg_trac_elg_ngc_allmask": "n_true_rec_meas_eboss_ngc_allmask",
        "n_inj_elg_trac_elg_sgc_allmask": "n_true_rec_meas_eboss_sgc_allmask",
        "npsf": "n_type_psf",
        "nsimp": "n_type_simp",
        "nrex": "n_type_rex",
        "nexp": "n_type_exp",
        "ndev": "n_type_dev",
        "ncomp": "n_type_comp",
    },
}
# new columns the old tables did not have (besides the new names above)
NEW_ONLY = {
    # psql_e1, psql_e2: the old SQL selected 11 fixed truth columns, obiwan_h5 takes every one
    "randoms": {"brickname", "rsdir", "psql_e1", "psql_e2"},
    "summary": {"ra", "dec", "n_true_desi_elg", "n_true_rec_meas_desi_elg"},
}


def old_columns(schema):
    groups, group = {}, None
    with open(os.path.join(DATA, f"old_columns_{schema}.txt")) as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                group = line.strip("[]")
                groups[group] = []
            else:
                groups[group].append(line)
    return groups


@pytest.fixture(scope="module")
def derived_files(dr5_production, dr3_production, tmp_path_factory):
    out = tmp_path_factory.mktemp("parity")
    files = {}
    for schema, production in (("dr5", dr5_production), ("dr3", dr3_production)):
        for keep in (False, True):
            path = str(out / f"{schema}_{keep}.h5")
            derive(DeriveOptions(production, path, keep_all_apflux=keep), SerialComm())
            files[schema, keep] = path
    return files


def new_columns(path):
    with h5py.File(path, "r") as handle:
        return {group: handle[group].attrs["column_order"].split(",") for group in ("randoms", "summary")}


def _differences(schema, derived_files):
    old, new = old_columns(schema), new_columns(derived_files[schema, False])
    return {group: (sorted(set(old[group]) - set(new[group])), sorted(set(new[group]) - set(old[group])))
            for group in ("randoms", "summary")}


@pytest.mark.parametrize("schema", ["dr5", "dr3"])
def test_every_old_column_is_present_or_explained(schema, derived_files):
    with open(MIGRATION) as handle:
        doc = handle.read()
    new = new_columns(derived_files[schema, False])
    for group, (missing, added) in _differences(schema, derived_files).items():
        for name in missing:
            assert name in OLD_ONLY[group], f"{schema} {group}: old column {name} is missing, and not explained"
            assert f"`{name}`" in doc, f"docs/migration.md does not mention the old column `{name}`"
            renamed = OLD_ONLY[group][name]
            if renamed is not None:
                assert renamed in new[group] and f"`{renamed}`" in doc
        renames = set(OLD_ONLY[group].values())
        for name in added:
            assert name in NEW_ONLY[group] or name in renames, (
                f"{schema} {group}: new column {name} is not in the migration table")
            assert f"`{name}`" in doc, f"docs/migration.md does not mention the new column `{name}`"


def test_allow_lists_are_not_stale(derived_files):
    """Every explained difference really occurs in one of the schemas."""
    occurring = {"randoms": set(), "summary": set()}
    for schema in ("dr5", "dr3"):
        for group, (missing, added) in _differences(schema, derived_files).items():
            occurring[group] |= set(missing) | set(added)
    for group in ("randoms", "summary"):
        assert set(OLD_ONLY[group]) <= occurring[group]
        assert NEW_ONLY[group] <= occurring[group]


def test_summary_has_the_old_per_brick_columns(derived_files):
    new = new_columns(derived_files["dr5", False])["summary"]
    for name in ["nobjs"] + [f"{c}_{b}" for c in ("trans", "ext", "nexp", "nexphist") for b in "grz"]:
        assert name in new


@pytest.mark.parametrize("schema", ["dr5", "dr3"])
def test_keep_all_apflux_keeps_every_aperture_column(schema, derived_files):
    from obiwan_h5.sim.catalogs import tractor_dtype

    apertures = {f"tractor_{name}" for name in tractor_dtype(schema).names if "apflux" in name}
    kept = set(new_columns(derived_files[schema, True])["randoms"])
    pruned = set(new_columns(derived_files[schema, False])["randoms"])
    assert apertures <= kept
    assert {name for name in apertures if "ivar" in name}.isdisjoint(pruned)
    # every old column is there with --keep-all-apflux: the DR3 difference disappears
    assert set(old_columns(schema)["randoms"]) <= kept
    assert kept - pruned == {name for name in apertures if name not in pruned}
