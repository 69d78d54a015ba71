"""The file-format reference (docs/format.md), generated from the code.

    python -m obiwan_h5.sim.reference > docs/format.md      (what `make docs` runs)

It derives a one-brick simulated production of each Tractor schema and describes every
dataset the job writes: dtype, shape, unit, description and where it is computed.
`tests/test_reference.py` fails when docs/format.md is not what this prints.
"""

import os
import re
import sys
import tempfile

import h5py

from ..fileformat import INDEX_DESCRIPTIONS, SUMMARY_COLUMNS, TRACTOR_PREFIX, TRUTH_PREFIX, mask_value

__all__ = ["format_reference", "where_computed"]

# (pattern, where the column is computed), first match wins
_WHERE = [
    (r"unique_id|brickname|rsdir", "core.derivation.derive_rows"),
    (re.escape(TRUTH_PREFIX) + ".*", "production.truth.TruthTable.lookup, joined in core.derivation.derive_rows"),
    (re.escape(TRACTOR_PREFIX) + ".*", "core.derivation.derive_rows (nearest source within the match radius)"),
    (r"obiwan_mask", "core.derivation.obiwan_mask"),
    (r"targets_mask", "core.derivation.targets_bits → core.selection.targets_mask"),
]
SIMCAT_WHERE = "the simcat (job.scan, core.derivation.derive_rows), rows kept by core.derivation.added_rows"
INDEX_WHERE = {"checksum": "fileformat.rows_checksum, written by job.derive"}


def where_computed(group, name, simcat_columns=()):
    """Module and function that compute a column of `group`.

    A ``randoms`` column that is neither derived, truth nor Tractor must be one of
    `simcat_columns` (the simcat's own columns); anything else raises `KeyError`, so a
    new column cannot reach the reference without saying where it comes from.
    """
    if group == "summary":
        if name not in SUMMARY_COLUMNS:
            raise KeyError(f"summary column {name!r} is not in fileformat.SUMMARY_COLUMNS")
        return "core.summary.summarise_brick"
    if group == "bricks":
        if name not in INDEX_DESCRIPTIONS:
            raise KeyError(f"index dataset {name!r} is not in fileformat.INDEX_DESCRIPTIONS")
        return INDEX_WHERE.get(name, "job.plan.build_plan / job.derive")
    if group != "randoms":
        raise KeyError(f"no group {group!r} in the format")
    for pattern, module in _WHERE:
        if re.fullmatch(pattern, name):
            return module
    if name in simcat_columns:
        return SIMCAT_WHERE
    raise KeyError(f"randoms column {name!r}: not derived, not truth, not Tractor, not in the simcat")


def _derived_file(workdir, schema):
    from ..job import DeriveOptions, derive
    from ..job.mpi import SerialComm
    from .simulate import simulate

    production = os.path.join(workdir, schema)
    simulate(production, n_bricks=1, rsdirs=1, per_rsdir=20, schema=schema, seed=1)
    output = os.path.join(workdir, f"{schema}.h5")
    derive(DeriveOptions(production, output), SerialComm())
    return output, _simcat_columns(production)


def _simcat_columns(production):
    from ..production.inputs import FitsTable
    from ..production.layout import Production

    layout = Production(production)
    with open(os.path.join(production, "bricks.txt")) as handle:
        brickname = handle.read().split()[0]
    return set(FitsTable(layout.simcat(brickname, layout.rsdirs(brickname)[0])).schema)


def _dtype_text(dtype):
    return "bool" if dtype.kind == "b" else dtype.str.lstrip("<>=|")


def _table(handle, group, order=None, simcat_columns=()):
    names = order or sorted(handle[group])
    lines = ["| column | dtype | per-row shape | unit | description | computed in |", "|---|---|---|---|---|---|"]
    for name in names:
        dset = handle[group][name]
        shape = "×".join(str(n) for n in dset.shape[1:]) or "scalar"
        lines.append(f"| `{name}` | {_dtype_text(dset.dtype)} | {shape} | {dset.attrs.get('unit', '')} | "
                     f"{dset.attrs.get('description', '')} | `{where_computed(group, name, simcat_columns)}` |")
    return "\n".join(lines)


def _bits_table(attrs):
    from ..read.metadata import bit_definitions

    lines = []
    for mask in ("obiwan_mask", "targets_mask"):
        lines += ["", f"`{mask}`:", "", "| bit | value | name | meaning |", "|---|---|---|---|"]
        lines += [f"| {bit} | {mask_value([bit])} | `{name}` | {meaning} |"
                  for column, bit, name, meaning in bit_definitions(attrs) if column == mask]
    return "\n".join(lines[1:])


def format_reference():
    """The Markdown text of docs/format.md."""
    import logging

    logging.getLogger("obiwan_h5").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as workdir:
        (dr5, simcat5), (dr3, simcat3) = _derived_file(workdir, "dr5"), _derived_file(workdir, "dr3")
        with h5py.File(dr5, "r") as five, h5py.File(dr3, "r") as three:
            order = five["randoms"].attrs["column_order"].split(",")
            only_dr3 = [name for name in three["randoms"].attrs["column_order"].split(",") if name not in order]
            attrs = sorted(five.attrs)
            parts = [
                "# File format reference",
                "",
                "Generated by `python -m obiwan_h5.sim.reference` (`make docs`) from a simulated production;",
                "`make test` checks that this page is current. The layout is described in",
                "[derive.md](derive.md#the-file); a reader needs only h5py.",
                "",
                "Tractor columns are copied from the production's own catalogs, so a real production has",
                "the columns of its data release: below are those of the simulator's DR5 schema, then the",
                "extra ones of its DR3 schema (arrays over DECam ugrizY: index 1 is g, 2 is r, 4 is z).",
                "",
                "## File attributes",
                "",
                ", ".join(f"`{name}`" for name in attrs),
                "",
                "## Mask bits",
                "",
                "As the attributes `obiwan_mask_bits` and `targets_mask_bits` store them (both",
                "`{name: {\"bit\": b, \"meaning\": m}}`, from `fileformat.mask_bits_attributes`); a row has",
                "bit b when `(mask & 2**b) != 0`.",
                "",
                _bits_table(five.attrs),
                "",
                "## `/randoms` (one row per injected source; DR5 schema, derivation order)",
                "",
                _table(five, "randoms", order, simcat5),
                "",
                "### Columns of a DR3-schema production that DR5 has not",
                "",
                _table(three, "randoms", only_dr3, simcat3),
                "",
                "## `/summary` (one row per brick)",
                "",
                _table(five, "summary", five["summary"].attrs["column_order"].split(",")),
                "",
                "## `/bricks` (the brick index)",
                "",
                _table(five, "bricks"),
                "",
            ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(format_reference())
