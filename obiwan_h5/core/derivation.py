"""The derived rows of one brick (docs/concepts.md): pure functions on arrays, no IO, no MPI.

Columns, in the order they appear in the file:

``unique_id, brickname, rsdir``
    identity of the injection (`brick_parts`).
simcat columns (``id, ra, dec, x, y, gflux, ...``)
    what was injected, as in the simcat, rows kept by `added_rows`.
``psql_<col>``
    the randoms truth table row of the id.
``tractor_<col>``
    the nearest Tractor source within the match radius (`match_tractor`), fill values when none.
``obiwan_mask``
    recovery bits (`obiwan_mask`).
``targets_mask``
    target-selection bits (`targets_bits`, definitions in `selection.py`).
"""

import functools
from collections.abc import Mapping

import numpy as np

from ..errors import BrickError
from ..fileformat import BANDS, OBIWAN_BITS, bit_set, fill_value
from . import selection
from .matching import has_neighbour, match_nearest
from .photometry import band_quantity, deextincted_flux, true_flux
from .schema import as_records

__all__ = [
    "add_targets_mask",
    "added_rows",
    "brick_parts",
    "derived_schema",
    "match_tractor",
    "obiwan_mask",
    "rows_targets_mask",
    "targets_bits",
    "unique_ids",
]

def added_rows(simcat_ids, ids_added, where=""):
    """Indices of the simcat rows whose id is in sim_ids_added, in simcat order.

    Raises `BrickError` on duplicate ids in `ids_added` or ids absent from the simcat.
    """
    simcat_ids = np.asarray(simcat_ids, dtype=np.int64)
    ids_added = np.asarray(ids_added, dtype=np.int64)
    unique, counts = np.unique(ids_added, return_counts=True)
    if np.any(counts > 1):
        raise BrickError(f"{where}duplicate id {unique[counts > 1][0]} in sim_ids_added ({np.sum(counts > 1)} in all)")
    absent = ~np.isin(unique, simcat_ids)
    if np.any(absent):
        raise BrickError(f"{where}id {unique[absent][0]} of sim_ids_added is not in the simcat ({np.sum(absent)} in all)")
    return np.flatnonzero(np.isin(simcat_ids, unique))


def unique_ids(ids, brickname, rsdir):
    """``"<id>_<brick>_<rsdir>"`` as bytes."""
    # numpy formats integers as decimal bytes in C, far faster than a Python loop
    return np.char.add(np.asarray(ids, dtype=np.int64).astype("S20"), f"_{brickname}_{rsdir}".encode())


def match_tractor(ra, dec, tractor, radius_arcsec):
    """Tractor columns of the nearest source within the radius, as ``tractor_<col>``.

    `tractor` is a record array (`production.inputs.read_tractor`), anything that behaves as
    one for ``len``, ``dtype``, ``["ra"]``, ``["dec"]`` and ``take``
    (`production.inputs.PrimaryTractor`), or a dict of columns. Returns the columns and the
    boolean ``matched`` array. Unmatched rows get NaN, 0, False or empty strings (docs/concepts.md);
    dtypes are those of the catalog.
    """
    if isinstance(tractor, dict):
        tractor = as_records(tractor)
    index, _ = match_nearest(ra, dec, tractor["ra"], tractor["dec"], radius_arcsec)
    matched = index >= 0
    # one gather of whole records, then one assignment of the fill record: no per-column loop
    if len(tractor):
        picked = tractor.take(np.where(matched, index, 0))
    else:
        picked = np.zeros(len(index), tractor.dtype)
    if not matched.all():
        picked[~matched] = _fill_record(tractor.dtype)
    return {f"tractor_{name}": picked[name] for name in tractor.dtype.names}, matched


@functools.lru_cache(maxsize=64)
def _fill_record(dtype):
    record = np.zeros((), dtype)
    for name in dtype.names:
        record[name] = fill_value(dtype[name].base)
    return record


def obiwan_mask(matched, on_real_source):
    """Recovery bitmask, bits as in `OBIWAN_BITS`."""
    mask = np.where(matched, 1 << OBIWAN_BITS["recovered"][0], 0)
    mask |= np.where(matched & on_real_source, 1 << OBIWAN_BITS["on_real_source"][0], 0)
    return mask.astype(np.uint8)


def measured_mask_arrays(columns, prefix="tractor_", which="anymask"):
    """Per-band mask arrays for the eBOSS cut: `which`, else allmask, else None (no cut)."""
    for quantity in (which, "allmask"):
        arrays = {band: band_quantity(columns, quantity, band, prefix) for band in BANDS}
        if all(value is not None for value in arrays.values()):
            return arrays
    return None


def targets_bits(columns, matched, prefix="tractor_", mask="anymask"):
    """Target-selection bitmask from derived columns (true fluxes from the simcat).

    True flux is the flux added to the images divided by its transmission; measured flux
    is the Tractor flux divided by the Tractor transmission.
    """
    true = {band: true_flux(columns, band) for band in BANDS}
    nan = np.full(len(matched), np.nan)
    measured = {band: _or(deextincted_flux(columns, band, prefix), nan) for band in BANDS}
    psfdepth = {band: _or(band_quantity(columns, "psfdepth", band, prefix), nan) for band in BANDS}
    primary = columns.get(f"{prefix}brick_primary")
    return selection.targets_mask(
        true, measured, matched, psfdepth,
        mask=measured_mask_arrays(columns, prefix, mask),
        primary=None if primary is None else np.asarray(primary, bool),
    )


def rows_targets_mask(columns):
    """``targets_mask`` of derived rows that hold their columns already (``obiwan_mask``
    included): the rows of many bricks at once, since every cut is per row.

    Only for rows whose inputs had every column of `columns`: a column filled in for a
    catalog that lacks it (``brick_primary``, the masks) would cut where the catalog's own
    columns do not (`add_targets_mask` selects such rows on their own columns).
    """
    return targets_bits(columns, bit_set(columns["obiwan_mask"], OBIWAN_BITS["recovered"][0]))


def _or(value, default):
    return default if value is None else value


def brick_parts(brickname, parts, truth, dr_radec, radius_arcsec, select=True):
    """The derived columns of one brick, one dict per rsdir, each with its masks.

    Parameters
    ----------
    brickname : str
    parts : list of (rsdir, simcat, tractor)
        In canonical rsdir order; `simcat` holds only the added rows (`added_rows`),
        `tractor` the brick_primary rows of that rsdir's catalog
        (`production.inputs.read_tractor` or `primary_tractor`).
    truth : dict
        Truth-table columns aligned with the concatenated simcat ids.
    dr_radec : (ndarray, ndarray)
        ra, dec of the real DR catalog of the brick.
    radius_arcsec : float
    select : bool
        Add ``targets_mask`` (`add_targets_mask`); the job leaves it out and selects the
        rows of a whole write round at once (`rows_targets_mask`).

    Returns
    -------
    list of dict
        Column name -> array, in derivation order, per rsdir; each with its own catalog's
        Tractor columns (the job fills a column one rsdir lacks).
    """
    # one tree of the real catalog for the whole brick, not one per rsdir
    ra = np.concatenate([simcat["ra"] for _, simcat, _ in parts]) if parts else np.zeros(0)
    dec = np.concatenate([simcat["dec"] for _, simcat, _ in parts]) if parts else np.zeros(0)
    on_real_source = has_neighbour(ra, dec, dr_radec[0], dr_radec[1], radius_arcsec)
    pieces, start = [], 0
    for rsdir, simcat, tractor in parts:
        n = len(simcat["id"])
        piece = {
            "unique_id": unique_ids(simcat["id"], brickname, rsdir),
            "brickname": np.full(n, brickname.encode(), dtype="S8"),
            "rsdir": np.full(n, rsdir.encode(), dtype=f"S{len(rsdir)}"),
        }
        piece.update(simcat)
        piece.update({f"psql_{name}": values[start:start + n] for name, values in truth.items()})
        tractor_columns, matched = match_tractor(simcat["ra"], simcat["dec"], tractor, radius_arcsec)
        piece.update(tractor_columns)
        piece["obiwan_mask"] = obiwan_mask(matched, on_real_source[start:start + n])
        pieces.append(piece)
        start += n
    if select:
        add_targets_mask(pieces)
    return pieces


def add_targets_mask(pieces):
    """``targets_mask`` of every piece of a brick (`brick_parts`), on each piece's own columns:
    one selection over the whole brick when its rsdirs share one schema (the usual case:
    the cuts are per row, and one call on a brick's rows costs far less than one per rsdir
    of a few hundred rows), else one per rsdir."""
    matches = [bit_set(piece["obiwan_mask"], OBIWAN_BITS["recovered"][0]) for piece in pieces]
    layouts = {tuple((name, values.dtype.kind if values.dtype.kind == "S" else values.dtype, values.shape[1:])
                     for name, values in piece.items()) for piece in pieces}
    if len(pieces) > 1 and len(layouts) == 1:
        bits = targets_bits(_Joined(pieces), np.concatenate(matches))
        bounds = np.cumsum([len(matched) for matched in matches])[:-1]
        for piece, piece_bits in zip(pieces, np.split(bits, bounds)):
            piece["targets_mask"] = piece_bits
    else:
        for piece, matched in zip(pieces, matches):
            piece["targets_mask"] = targets_bits(piece, matched)


class _Joined(Mapping):
    """Columns of several pieces of one schema, concatenated when first looked up."""

    def __init__(self, pieces):
        self._pieces, self._joined = pieces, {}

    def __getitem__(self, name):
        if name not in self._joined:
            self._joined[name] = np.concatenate([piece[name] for piece in self._pieces])
        return self._joined[name]

    def __contains__(self, name):
        return name in self._pieces[0]

    def __iter__(self):
        return iter(self._pieces[0])

    def __len__(self):
        return len(self._pieces[0])


def derived_schema(simcat_schema, truth_schema, tractor_schema, unique_id_width, rsdir_width):
    """``{name: (dtype, shape)}`` of the derived columns, in derivation order.

    The schemas are those of `production.inputs.FitsTable.schema` (read from headers, so a plan can know
    the layout without reading any catalog).
    """
    schema = {
        "unique_id": (np.dtype(f"S{unique_id_width}"), ()),
        "brickname": (np.dtype("S8"), ()),
        "rsdir": (np.dtype(f"S{rsdir_width}"), ()),
    }
    schema.update(simcat_schema)
    schema.update({f"psql_{name}": spec for name, spec in truth_schema.items()})
    schema.update({f"tractor_{name}": spec for name, spec in tractor_schema.items()})
    schema["obiwan_mask"] = (np.dtype(np.uint8), ())
    schema["targets_mask"] = (np.dtype(np.uint8), ())
    return schema
