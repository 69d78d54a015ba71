"""The derived rows (docs/concepts.md): pure functions on arrays, no IO, no MPI.

Columns, in the order they appear in the file:

``unique_id, brickname, rsdir``
    identity of the injection (`unique_ids`).
simcat columns (``id, ra, dec, x, y, gflux, ...``)
    what was injected, as in the simcat, rows kept by `added_rows`.
``psql_<col>``
    the randoms truth table row of the id.
``tractor_<col>``
    the nearest Tractor source within the match radius, fill values when none.
``obiwan_mask``
    recovery bits (`obiwan_mask`).
``targets_mask``
    target-selection bits (`targets_bits`, definitions in `selection.py`).

`derive_rows` derives the pieces of many bricks (a piece is one rsdir of one brick) at
once, column by column: one match of every piece, one gather and one assignment per
column. It reads the simcat and Tractor catalogs as *tables* (`schema.place_tables`).
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import BrickError
from ..fileformat import (
    BANDS,
    ON_REAL_SOURCE_BIT,
    RECOVERED_BIT,
    TRACTOR_PREFIX,
    TRUTH_PREFIX,
    bitmask,
    fill_value,
    is_recovered,
    tractor_column,
    truth_column,
)
from . import selection
from .matching import has_neighbour, match_nearest
from .photometry import band_quantity, deextincted_flux, true_flux
from .schema import ArrayTable, Positions, place_tables

__all__ = [
    "IDENTITY",
    "MASKS",
    "Piece",
    "added_rows",
    "brick_pieces",
    "derive_rows",
    "derived_schema",
    "obiwan_mask",
    "targets_bits",
    "unique_id_width",
    "unique_ids",
]

# the columns derive_rows makes itself (a simcat column of one of these names would be overwritten)
IDENTITY = ("unique_id", "brickname", "rsdir")
MASKS = ("obiwan_mask", "targets_mask")


def added_rows(simcat_ids, ids_added, error_prefix=""):
    """Indices of the simcat rows whose id is in sim_ids_added, in simcat order.

    Raises `BrickError` on duplicate ids in `ids_added` or ids absent from the simcat, its
    message after `error_prefix` (the rsdir, e.g. ``"rs0: "``).
    """
    simcat_ids = np.asarray(simcat_ids, dtype=np.int64)
    added = np.sort(np.asarray(ids_added, dtype=np.int64))
    repeated = added[1:][added[1:] == added[:-1]]
    if len(repeated):
        duplicates = np.unique(repeated)
        raise BrickError(f"{error_prefix}duplicate id {duplicates[0]} in sim_ids_added ({len(duplicates)} in all)")
    # membership by binary search in the sorted ids: a brick's few hundred ids at a time,
    # where numpy.isin's set-up is most of the cost
    known = np.sort(simcat_ids)
    absent = _missing(known, added)
    if np.any(absent):
        raise BrickError(f"{error_prefix}id {added[absent][0]} of sim_ids_added is not in the simcat ({np.sum(absent)} in all)")
    return np.flatnonzero(~_missing(added, simcat_ids))


def _missing(sorted_ids, ids):
    """Whether each of `ids` is absent from `sorted_ids`."""
    if len(sorted_ids) == 0:
        return np.ones(len(ids), bool)
    position = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[position] != ids


def unique_ids(ids, brickname, rsdir):
    """``"<id>_<brick>_<rsdir>"`` as bytes."""
    return _unique_ids(ids, f"_{brickname}_{rsdir}".encode())


def _unique_ids(ids, suffixes):
    # numpy formats integers as decimal bytes in C, far faster than a Python loop
    return np.char.add(np.asarray(ids, dtype=np.int64).astype("S20"), suffixes)


def unique_id_width(ids, brickname, rsdir):
    """Bytes of the longest `unique_ids` of `ids` (of a one-digit id when there is none)."""
    ids = np.asarray(ids, dtype=np.int64)
    digits = max(len(str(ids.min())), len(str(ids.max()))) if len(ids) else 1
    return digits + len(brickname) + len(rsdir) + 2


def obiwan_mask(matched, on_real_source):
    """Recovery bitmask, bits as in `fileformat.OBIWAN_BITS`."""
    matched = np.asarray(matched, bool)
    return bitmask({RECOVERED_BIT: matched, ON_REAL_SOURCE_BIT: matched & np.asarray(on_real_source, bool)})


def measured_mask_arrays(columns, prefix=TRACTOR_PREFIX, which="anymask"):
    """Per-band mask arrays for the eBOSS cut: `which`, else allmask, else None (no cut)."""
    for quantity in (which, "allmask"):
        arrays = {band: band_quantity(columns, quantity, band, prefix) for band in BANDS}
        if all(value is not None for value in arrays.values()):
            return arrays
    return None


def targets_bits(columns, matched=None, prefix=TRACTOR_PREFIX, mask="anymask"):
    """``targets_mask`` of derived rows: the one place that turns derived columns into the
    target-selection bits (`selection.targets_mask`).

    True flux is the flux added to the images divided by its transmission; measured flux
    is the Tractor flux divided by the Tractor transmission. Every cut is per row, so the
    rows of many bricks are selected in one call; `columns` must hold only the columns the
    rows' own catalogs had (a column filled in for a catalog that lacks it, such as
    ``brick_primary`` or a mask, would cut where the catalog's own columns do not).

    Parameters
    ----------
    columns : mapping
        Derived columns (name -> array).
    matched : array_like of bool, optional
        Whether each row was recovered; default: the recovered bit of ``obiwan_mask``.
    prefix, mask : str
        Prefix of the Tractor columns; the mask quantity of the eBOSS cut.
    """
    if matched is None:
        matched = is_recovered(columns["obiwan_mask"])
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


def _or(value, default):
    return default if value is None else value


@dataclass
class Piece:
    """One rsdir of one brick, as `derive_rows` reads it.

    Attributes
    ----------
    brickname, rsdir : str
    simcat : table
        The simcat rows in sim_ids_added (`added_rows`), in simcat order.
    tractor : table
        The brick_primary rows of the rsdir's Tractor catalog.
    start : int
        Its first row in the buffers; the pieces of one call come in row order.
    """

    brickname: str
    rsdir: str
    simcat: object
    tractor: object
    start: int = 0


def derive_rows(pieces, truth, dr_radec, radius_arcsec, rows):
    """Derive the rows of `pieces` into the column buffers `rows`, all pieces at once.

    Parameters
    ----------
    pieces : list of Piece
        In row order, each at its own `Piece.start`.
    truth : dict
        Truth-table columns aligned with the concatenated simcat rows of the pieces.
    dr_radec : dict
        ``{brickname: (ra, dec)}`` of each brick's real DR catalog.
    radius_arcsec : float
    rows : dict
        Column name -> buffer, the columns of the plan (a column a piece's catalogs lack is
        filled as unmatched rows); every row of every piece is written, ``targets_mask`` included.

    Returns
    -------
    list of int
        Each piece's Tractor sources (its brick_primary rows: the summary's ``nobjs``).
    """
    if not pieces:
        return []
    positions = Positions([piece.start for piece in pieces], [len(piece.simcat) for piece in pieces])
    families = _families(rows)
    ids = _concatenate(piece.simcat.column("id") for piece in pieces).astype(np.int64)
    suffixes = np.array([f"_{piece.brickname}_{piece.rsdir}".encode() for piece in pieces])
    every = positions.all
    rows["unique_id"][every] = _unique_ids(ids, np.repeat(suffixes, positions.sizes))
    rows["brickname"][every] = np.repeat(np.array([piece.brickname.encode() for piece in pieces]), positions.sizes)
    rows["rsdir"][every] = np.repeat(np.array([piece.rsdir.encode() for piece in pieces]), positions.sizes)
    place_tables(rows, families["simcat"], "", [piece.simcat for piece in pieces], None, positions)
    for name in families["truth"]:
        values = truth.get(name[len(TRUTH_PREFIX):])
        rows[name][every] = fill_value(rows[name].dtype) if values is None else values
    ra, dec = (_concatenate(piece.simcat.column(axis) for piece in pieces) for axis in ("ra", "dec"))
    matched, picks = _match_tractor(pieces, ra, dec, positions.sizes, radius_arcsec)
    place_tables(rows, families["tractor"], TRACTOR_PREFIX, [piece.tractor for piece in pieces], picks, positions)
    on_real_source = _on_real_source(pieces, ra, dec, positions.sizes, dr_radec, radius_arcsec)
    rows["obiwan_mask"][every] = obiwan_mask(matched, on_real_source)
    _select(rows, pieces, positions)
    return [len(piece.tractor) for piece in pieces]


def _concatenate(arrays, dtype=np.float64):
    return np.concatenate([np.asarray(values, dtype) for values in arrays])


def _match_tractor(pieces, ra, dec, sizes, radius_arcsec):
    """Whether each injected source of the pieces has a Tractor source of its own rsdir
    within the radius (one grouped match for all pieces), and, per piece, the row of its
    Tractor table each source matched (-1 when none)."""
    tractors = [piece.tractor for piece in pieces]
    counts = np.array([len(table) for table in tractors], dtype=np.int64)
    group = np.repeat(np.arange(len(pieces)), sizes)
    index, _ = match_nearest(ra, dec, _concatenate(table.column("ra") for table in tractors),
                             _concatenate(table.column("dec") for table in tractors), radius_arcsec,
                             group, np.repeat(np.arange(len(pieces)), counts))
    matched = index >= 0
    local = np.where(matched, index - (np.cumsum(counts) - counts)[group], -1)
    return matched, np.split(local, np.cumsum(sizes)[:-1])


def _on_real_source(pieces, ra, dec, sizes, dr_radec, radius_arcsec):
    """Whether each injected source lies within the radius of a source of its brick's real
    DR catalog (one grouped match for all the bricks of the pieces)."""
    bricks = {name: number for number, name in enumerate(dict.fromkeys(piece.brickname for piece in pieces))}
    real = [dr_radec[brick] for brick in bricks]
    return has_neighbour(ra, dec, _concatenate(ra_dr for ra_dr, _ in real), _concatenate(dec_dr for _, dec_dr in real),
                         radius_arcsec, np.repeat([bricks[piece.brickname] for piece in pieces], sizes),
                         np.repeat(np.arange(len(bricks)), [len(ra_dr) for ra_dr, _ in real]))


def _families(rows):
    """The buffers' columns by where they come from: the simcat, the truth, the catalog."""
    truth = [name for name in rows if name.startswith(TRUTH_PREFIX)]
    tractor = [name for name in rows if name.startswith(TRACTOR_PREFIX)]
    own = set(IDENTITY) | set(MASKS) | set(truth) | set(tractor)
    return {"simcat": [name for name in rows if name not in own], "truth": truth, "tractor": tractor}


def _select(rows, pieces, positions):
    """``targets_mask`` of the pieces' rows: one `targets_bits` call for every piece whose
    catalogs have every column of the plan, one per other combination of columns, each on
    the columns its catalogs had."""
    planned = set(rows) - {"targets_mask"}
    truth = {name for name in rows if name.startswith(TRUTH_PREFIX)}
    kinds = {}
    for number, piece in enumerate(pieces):
        kinds.setdefault((piece.simcat.key, piece.tractor.key), []).append(number)
    complete, selections = [], []
    for members in kinds.values():
        piece = pieces[members[0]]
        present = (set(IDENTITY) | set(MASKS) | truth | set(piece.simcat.names)
                   | {tractor_column(name) for name in piece.tractor.names})
        if planned <= present:
            complete.extend(members)
        else:
            selections.append((members, present))
    if complete:
        selections.append((sorted(complete), None))
    for members, present in selections:
        target = positions.of(np.array(members))
        rows["targets_mask"][target] = targets_bits(_View(rows, target, present))


class _View(Mapping):
    """Some rows of the buffers (`at`: a slice or indices), and only the columns `names`
    (all when None)."""

    def __init__(self, rows, at, names=None):
        self._rows, self._at, self._names = rows, at, names

    def __getitem__(self, name):
        if self._names is not None and name not in self._names:
            raise KeyError(name)
        return self._rows[name][self._at]

    def __contains__(self, name):
        return name in self._rows and (self._names is None or name in self._names)

    def __iter__(self):
        return (name for name in self._rows if name in self)

    def __len__(self):
        return sum(1 for _ in self)


def brick_pieces(brickname, inputs, truth, dr_radec, radius_arcsec):
    """The derived columns of one brick, one dict per piece (rsdir), each with its own
    catalog's columns: `derive_rows` of each piece into buffers of its own schema.

    Parameters
    ----------
    brickname : str
    inputs : list of (rsdir, simcat, tractor)
        In canonical rsdir order; `simcat` the added rows (`added_rows`), `tractor` the
        brick_primary rows of that rsdir's catalog: tables (`CatalogRows`), record arrays
        (`production.inputs.read_tractor`) or dicts of columns.
    truth : dict
        Truth-table columns aligned with the concatenated simcat ids.
    dr_radec : (ndarray, ndarray)
        ra, dec of the real DR catalog of the brick.
    radius_arcsec : float

    Returns
    -------
    list of dict
        Column name -> array, in derivation order, per piece.
    """
    truth_schema = {name: (values.dtype, values.shape[1:]) for name, values in truth.items()}
    pieces, start = [], 0
    for rsdir, simcat, tractor in inputs:
        simcat, tractor = _as_table(simcat), _as_table(tractor)
        size = len(simcat)
        width = unique_id_width(simcat.column("id"), brickname, rsdir)
        schema = derived_schema(simcat.schema, truth_schema, tractor.schema, len(rsdir), width)
        rows = {name: np.empty((size,) + tuple(shape), dtype) for name, (dtype, shape) in schema.items()}
        derive_rows([Piece(brickname, rsdir, simcat, tractor)],
                    {name: values[start:start + size] for name, values in truth.items()},
                    {brickname: dr_radec}, radius_arcsec, rows)
        pieces.append(rows)
        start += size
    return pieces


def _as_table(source):
    return source if hasattr(source, "gather") else ArrayTable(source)


def derived_schema(simcat_schema, truth_schema, tractor_schema, rsdir_width, unique_id_width=None):
    """``{name: (dtype, shape)}`` of the derived columns of one rsdir, in derivation order.

    The schemas are those of `production.inputs.FitsTable.schema` (read from headers, so a
    plan can know the layout without reading any catalog). Without `unique_id_width` the
    ``unique_id`` column is left out: the plan, which knows the widest, puts it first.
    """
    schema = {} if unique_id_width is None else {"unique_id": (np.dtype(f"S{unique_id_width}"), ())}
    schema.update({"brickname": (np.dtype("S8"), ()), "rsdir": (np.dtype(f"S{rsdir_width}"), ())})
    schema.update(simcat_schema)
    schema.update({truth_column(name): spec for name, spec in truth_schema.items()})
    schema.update({tractor_column(name): spec for name, spec in tractor_schema.items()})
    schema["obiwan_mask"] = (np.dtype(np.uint8), ())
    schema["targets_mask"] = (np.dtype(np.uint8), ())
    return schema
