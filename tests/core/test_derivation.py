"""The pure derivation of one brick's rows, on hand-made catalogs with known answers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obiwan_h5.core.derivation import added_rows, brick_pieces, obiwan_mask, targets_bits
from obiwan_h5.core.schema import join_pieces
from obiwan_h5.errors import BrickError

ARCSEC = 1 / 3600.0


def test_added_rows_keeps_simcat_order():
    assert added_rows([10, 11, 12, 13], [13, 10]).tolist() == [0, 3]


@pytest.mark.parametrize("ids_added, message", [([10, 10], "duplicate id 10"), ([10, 99], "id 99 .* not in the simcat")])
def test_added_rows_failures(ids_added, message):
    with pytest.raises(BrickError, match=message):
        added_rows([10, 11], ids_added)


def test_obiwan_mask_bits():
    matched = np.array([True, True, False, False])
    on_real = np.array([True, False, True, False])
    assert obiwan_mask(matched, on_real).tolist() == [3, 1, 0, 0]


def _simcat(ids, ra, dec, mag=(22.5, 22.0, 21.5)):
    n = len(ids)
    flux = {band: np.full(n, 10 ** ((22.5 - m) / 2.5), np.float32) for band, m in zip("grz", mag)}
    return {
        "id": np.array(ids, np.int64), "ra": np.array(ra, np.float64), "dec": np.array(dec, np.float64),
        "gflux": flux["g"] * 0.9, "rflux": flux["r"] * 0.9, "zflux": flux["z"] * 0.9,
        "mw_transmission_g": np.full(n, 0.9, np.float32), "mw_transmission_r": np.full(n, 0.9, np.float32),
        "mw_transmission_z": np.full(n, 0.9, np.float32),
    }


def _tractor(ra, dec, nobs):
    n = len(ra)
    return {
        "ra": np.array(ra, np.float64), "dec": np.array(dec, np.float64),
        "nobs_g": np.array(nobs, np.int16), "type": np.array([b"REX "] * n, "S4"),
        "brick_primary": np.ones(n, bool),
        "flux_g": np.full(n, 1.0, np.float32),
    }


def test_brick_pieces_join_match_and_fill():
    ra0, dec0 = 150.0, 2.0
    simcat_a = _simcat([5, 6], [ra0, ra0 + 10 * ARCSEC], [dec0, dec0])
    simcat_b = _simcat([7], [ra0 + 20 * ARCSEC], [dec0])
    # rs0: source 5 has a Tractor source 0.5" away; source 6 has none within 1"
    tractor_a = _tractor([ra0 + 0.5 * ARCSEC, ra0 + 12 * ARCSEC], [dec0, dec0], [3, 4])
    # rs1: the catalog lacks nobs_g and has another column: both filled where absent
    tractor_b = _tractor([ra0 + 20 * ARCSEC], [dec0 + 0.3 * ARCSEC], [9])
    del tractor_b["nobs_g"]
    truth = {"id": np.array([5, 6, 7]), "g": np.array([23.0, 24.0, 25.0])}
    dr = (np.array([ra0 + 20 * ARCSEC]), np.array([dec0 + 0.2 * ARCSEC]))
    pieces = brick_pieces("1500p020", [("rs0", simcat_a, tractor_a), ("rs1", simcat_b, tractor_b)], truth, dr, 1.0)
    rows = join_pieces(pieces)
    assert rows["unique_id"].tolist() == [b"5_1500p020_rs0", b"6_1500p020_rs0", b"7_1500p020_rs1"]
    assert rows["rsdir"].tolist() == [b"rs0", b"rs0", b"rs1"]
    assert rows["psql_g"].tolist() == [23.0, 24.0, 25.0]
    assert rows["tractor_nobs_g"].tolist() == [3, 0, 0] and rows["tractor_nobs_g"].dtype == np.int16
    assert rows["tractor_type"].tolist() == [b"REX ", b"", b"REX "]
    assert rows["tractor_brick_primary"].tolist() == [True, False, True]
    assert rows["tractor_ra"][0] == ra0 + 0.5 * ARCSEC and np.isnan(rows["tractor_ra"][1])
    assert rows["obiwan_mask"].tolist() == [1, 0, 3]
    list_order = list(rows)
    assert list_order[:3] == ["unique_id", "brickname", "rsdir"] and list_order[-2:] == ["obiwan_mask", "targets_mask"]


def test_targets_bits_true_flux_from_simcat_and_measured_never_unmatched():
    # an ELG-like source: g=23.0, r=22.6, z=21.9 → passes DESI ELG on true fluxes
    columns = _simcat([1, 2], [0.0, 0.0], [0.0, 0.0], mag=(23.0, 22.6, 21.9))
    for band in "grz":
        flux = columns[f"{band}flux"] / columns[f"mw_transmission_{band}"]
        columns[f"tractor_flux_{band}"] = flux
        columns[f"tractor_mw_transmission_{band}"] = np.ones(2, np.float32)
    columns["tractor_brick_primary"] = np.array([True, True])
    matched = np.array([True, False])
    bits = targets_bits(columns, matched)
    assert bits.tolist() == [(1 << 2) | (1 << 5), 1 << 5]


@pytest.mark.parametrize("same_schema", [True, False])
def test_targets_mask_of_a_brick_equals_one_selection_per_rsdir(same_schema):
    # rsdirs of one schema are selected in one call over the brick; mixed ones one by one
    ra0, dec0 = 150.0, 2.0
    rng = np.random.default_rng(3)
    inputs = []
    for k, rsdir in enumerate(["rs0", "rs500", "rs1000"]):
        n = 40
        ra = ra0 + rng.uniform(0, 200, n) * ARCSEC
        dec = np.full(n, dec0 + k * 300 * ARCSEC)
        simcat = _simcat(np.arange(n) + 100 * k, ra, dec, mag=(23.0, 22.6, 21.9))
        for band in "grz":
            simcat[f"{band}flux"] = simcat[f"{band}flux"] * rng.uniform(0.5, 1.5, n).astype(np.float32)
        tractor = _tractor(ra[::2] + 0.2 * ARCSEC, dec[::2], np.full(n // 2, 3))
        for band in "grz":
            tractor[f"flux_{band}"] = (simcat[f"{band}flux"][::2] * rng.uniform(0.8, 1.2, n // 2)).astype(np.float32)
            tractor[f"mw_transmission_{band}"] = np.full(n // 2, 0.9, np.float32)
            tractor[f"psfdepth_{band}"] = np.full(n // 2, 500.0, np.float32)
        if not same_schema and k == 1:
            del tractor["psfdepth_z"]
        inputs.append((rsdir, simcat, tractor))
    ids = np.concatenate([simcat["id"] for _, simcat, _ in inputs])
    truth = {"id": ids}
    pieces = brick_pieces("1500p020", inputs, truth, (np.zeros(0), np.zeros(0)), 1.0)
    for piece in pieces:
        matched = (piece["obiwan_mask"] & 1).astype(bool)
        own = {name: values for name, values in piece.items() if name != "targets_mask"}
        assert np.array_equal(piece["targets_mask"], targets_bits(own, matched))
    assert any(piece["targets_mask"].any() for piece in pieces)


def test_a_round_of_bricks_equals_its_bricks_one_at_a_time():
    """`derive_rows` of many bricks at once (one match, one gather and one selection per
    kind of catalog) writes, row for row, what each brick's own derivation gives, conformed
    to the round's columns: rsdirs without brick_primary, without a depth, an empty Tractor
    catalog and an rsdir without rows included."""
    from obiwan_h5.core.derivation import ArrayTable, Piece, derive_rows
    from obiwan_h5.core.schema import conform_into, union_schemas
    from obiwan_h5.fileformat import Column

    rng = np.random.default_rng(11)
    bricks, truth_ids, next_id = [], [], 1000
    for number, brickname in enumerate(["1500p020", "1501p020", "1502p020"]):
        ra0, dec0 = 150.0 + number * 0.25, 2.0
        inputs = []
        for k, rsdir in enumerate(["rs0", "rs1", "more_rs12"]):
            n = 0 if (number, k) == (1, 2) else 30
            ids = np.arange(next_id, next_id + n)
            next_id += n
            ra = ra0 + rng.uniform(0, 300, n) * ARCSEC
            dec = np.full(n, dec0 + k * 400 * ARCSEC)
            simcat = _simcat(ids, ra, dec, mag=(23.0, 22.6, 21.9))
            rows = 0 if (number, k) == (2, 0) else n // 2
            tractor = _tractor(ra[:rows] + 0.2 * ARCSEC, dec[:rows], np.full(rows, 3))
            for band in "grz":
                tractor[f"flux_{band}"] = (simcat[f"{band}flux"][:rows] * rng.uniform(0.8, 1.2, rows)).astype(np.float32)
                tractor[f"mw_transmission_{band}"] = np.full(rows, 0.9, np.float32)
                tractor[f"psfdepth_{band}"] = np.full(rows, 500.0, np.float32)
            if (number, k) == (0, 1):
                del tractor["brick_primary"]
            if (number, k) == (1, 0):
                del tractor["psfdepth_z"]
            inputs.append((rsdir, simcat, tractor))
            truth_ids.append(ids)
        # a real source beside the first injected one, one far from all
        first = inputs[0][1]
        dr = (np.array([first["ra"][0] + 0.3 * ARCSEC, ra0 - 1.0]), np.array([first["dec"][0], dec0]))
        bricks.append((brickname, inputs, dr))
    ids = np.concatenate(truth_ids)
    truth = {"id": ids, "g": np.linspace(20, 25, len(ids))}

    one_by_one, start = [], 0
    for brickname, inputs, dr in bricks:
        size = sum(len(simcat["id"]) for _, simcat, _ in inputs)
        own = {name: values[start:start + size] for name, values in truth.items()}
        one_by_one.extend(brick_pieces(brickname, inputs, own, dr, 1.0))
        start += size
    schema = union_schemas([{name: (values.dtype, values.shape[1:]) for name, values in piece.items()}
                            for piece in one_by_one])
    columns = [Column(name, dtype, shape) for name, (dtype, shape) in schema.items()]
    nrows = len(ids)
    expected = {column.name: np.empty((nrows,) + column.shape, column.dtype) for column in columns}
    start = 0
    for piece in one_by_one:
        conform_into(expected, start, piece, columns, len(piece["unique_id"]))
        start += len(piece["unique_id"])

    rows = {column.name: np.empty((nrows,) + column.shape, column.dtype) for column in columns}
    pieces, start = [], 0
    for brickname, inputs, _ in bricks:
        for rsdir, simcat, tractor in inputs:
            pieces.append(Piece(brickname, rsdir, ArrayTable(simcat), ArrayTable(tractor), start))
            start += len(simcat["id"])
    nobjs = derive_rows(pieces, truth, {name: dr for name, _, dr in bricks}, 1.0, rows)
    assert nobjs == [len(tractor["ra"]) for _, inputs, _ in bricks for _, _, tractor in inputs]
    for name in expected:
        assert np.array_equal(rows[name], expected[name], equal_nan=rows[name].dtype.kind == "f"), name
    assert rows["targets_mask"].any() and (rows["obiwan_mask"] & 2).any()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, 25), max_size=25), st.lists(st.integers(-8, 30), max_size=25))
def test_added_rows_against_sets(simcat_ids, ids_added):
    """Rows of the simcat ids in sim_ids_added, in simcat order; a duplicate or an absent
    added id names the smallest one and counts them."""
    duplicates = sorted({i for i in ids_added if ids_added.count(i) > 1})
    absent = sorted(set(ids_added) - set(simcat_ids))
    if duplicates:
        with pytest.raises(BrickError, match=f"duplicate id {duplicates[0]} in sim_ids_added \\({len(duplicates)} in"):
            added_rows(simcat_ids, ids_added)
    elif absent:
        with pytest.raises(BrickError, match=f"id {absent[0]} of sim_ids_added is not in the simcat \\({len(absent)} in"):
            added_rows(simcat_ids, ids_added)
    else:
        assert added_rows(simcat_ids, ids_added).tolist() == [i for i, x in enumerate(simcat_ids) if x in set(ids_added)]
