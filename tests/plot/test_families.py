"""The thesis figure families (`plot.families`): numbers from constructed batches."""

import numpy as np

from obiwan_h5.fileformat import TARGET_BITS
from obiwan_h5.plot.families import COLOUR_BINS, INPUT_BINS, Colours, Inputs, Morphology


def _mag_flux(mag):
    return (10 ** ((22.5 - np.asarray(mag, np.float64)) / 2.5)).astype(np.float32)


def _cell(bins, value):
    return int(np.searchsorted(bins, value, side="right") - 1)


def test_inputs_recovery_follows_rhalf():
    n = 400
    rhalf = np.linspace(0.05, 2.95, n)
    recovered = rhalf < 1.0
    batch = {"obiwan_mask": recovered.astype(np.uint8), "rhalf": rhalf.astype(np.float32),
             "psql_redshift": np.full(n, 0.85)}
    for b, mag in (("g", 22.3), ("r", 22.0), ("z", 21.5)):
        batch[f"{b}flux"] = np.full(n, _mag_flux(mag) * 0.9, np.float32)  # as added: extincted
        batch[f"mw_transmission_{b}"] = np.full(n, 0.9, np.float32)
        batch[f"tractor_flux_{b}"] = np.where(recovered, _mag_flux(mag) * 0.9, np.nan).astype(np.float32)
        batch[f"tractor_mw_transmission_{b}"] = np.full(n, 0.9, np.float32)
    acc = Inputs(set(batch), np.random.default_rng(1), 100)
    assert acc.props == {"rhalf": "rhalf", "redshift": "psql_redshift"}
    acc.add(batch)
    numbers = acc.numbers()
    prop = numbers["properties"]["rhalf"]
    bins = np.asarray(INPUT_BINS["rhalf"])
    centres = 0.5 * (bins[1:] + bins[:-1])
    fraction = np.array([np.nan if v is None else v for v in prop["fraction"]])
    assert np.all(fraction[centres < 0.95] == 1.0) and np.all(fraction[centres > 1.05] == 0.0)
    assert sum(prop["n"]) == n and sum(prop["n_recovered"]) == recovered.sum()
    assert numbers["properties"]["redshift"]["n"][_cell(INPUT_BINS["redshift"], 0.85)] == n
    g = numbers["bands"]["g"]
    # true de-extincted g = 22.3 for all; as added 0.114 mag fainter; measured only for recovered
    assert sum(g["n"]) == n and g["n"].index(n) == _cell(np.asarray(numbers["mag_bins"]), 22.3)
    assert g["n_added"].index(n) == _cell(np.asarray(numbers["mag_bins"]), 22.3 - 2.5 * np.log10(0.9))
    assert sum(g["n_measured"]) == recovered.sum()
    gr = numbers["colours"]["gr"]
    assert gr["n"][_cell(COLOUR_BINS["gr"], 0.3)] == n


def test_morphology_counts():
    batch = {"obiwan_mask": np.array([1, 1, 0, 1, 0], np.uint8),
             "tractor_type": np.array([b"EXP", b"DEV", b"", b"REX", b""]),
             "n": np.array([1.0, 4.0, 4.0, 1.0, 0.0], np.float32),
             "rhalf": np.array([0.5, 0.8, 0.8, 0.4, 0.0], np.float32),
             "e1": np.zeros(5, np.float32), "e2": np.zeros(5, np.float32)}
    for model, value in (("shapeexp", 0.6), ("shapedev", 1.0)):
        for stem, v in (("r", value), ("e1", 0.1), ("e2", -0.1)):
            batch[f"tractor_{model}_{stem}"] = np.full(5, v, np.float32)
    acc = Morphology(set(batch), np.random.default_rng(1), 100)
    acc.add(batch)
    numbers = acc.numbers()
    assert numbers["n_input"] == [1, 2, 2, 0] and numbers["n_recovered"] == [0, 2, 1, 0]
    assert numbers["fraction"][1] == 1.0 and numbers["fraction"][2] == 0.5
    counts = dict(zip(numbers["types"], numbers["n_measured_type"]))
    assert counts["EXP"] == counts["DEV"] == counts["REX"] == 1 and counts["PSF"] == 0
    rhalf = np.asarray(numbers["versus"]["rhalf"]["counts"])
    bins = INPUT_BINS["rhalf"]
    # DEV fit measured with shapedev (1.0), EXP and REX with shapeexp (0.6)
    assert rhalf[_cell(bins, 0.8), _cell(bins, 1.0)] == 1
    assert rhalf[_cell(bins, 0.5), _cell(bins, 0.6)] == 1 and rhalf[_cell(bins, 0.4), _cell(bins, 0.6)] == 1
    assert rhalf.sum() == 3
    # REX is round (its e1 = e2 = 0 by construction): only the EXP and DEV fits enter e1
    e1 = np.asarray(numbers["versus"]["e1"]["counts"])
    assert e1.sum() == 2 and e1[_cell(INPUT_BINS["e1"], 0.0), _cell(INPUT_BINS["e1"], 0.1)] == 2


def test_colours_recovered_lost_contaminating():
    # three sources (colours at cell centres): recovered at true (g-r, r-z) = (0.325, 0.825); lost
    # at (0.625, 1.225); and a recovered source not true-selected but measured-selected as DESI ELG,
    # measured at (0.225, 0.525)
    g, r, z = np.array([22.525, 22.925, 23.0]), np.array([22.2, 22.3, 22.0]), np.array([21.375, 21.075, 21.0])
    batch = {"obiwan_mask": np.array([1, 0, 1], np.uint8),
             "targets_mask": np.array([1 << TARGET_BITS["desi_elg_true"], 0, 1 << TARGET_BITS["desi_elg"]], np.uint8)}
    measured = {"g": 22.725, "r": 22.5, "z": 21.975}
    for b, mags in (("g", g), ("r", r), ("z", z)):
        batch[f"{b}flux"] = _mag_flux(mags)
        batch[f"mw_transmission_{b}"] = np.ones(3, np.float32)
        batch[f"tractor_flux_{b}"] = _mag_flux(np.full(3, measured[b]))
        batch[f"tractor_mw_transmission_{b}"] = np.ones(3, np.float32)
    acc = Colours(set(batch), np.random.default_rng(1), 100)
    acc.add(batch)
    numbers = acc.numbers()
    maps = {key: np.asarray(value) for key, value in numbers["maps"].items()}
    gr, rz = COLOUR_BINS["gr"], COLOUR_BINS["rz"]
    assert maps["recovered"][_cell(gr, 0.325), _cell(rz, 0.825)] == 1 and maps["recovered"].sum() == 2
    assert maps["lost"][_cell(gr, 0.625), _cell(rz, 1.225)] == 1 and maps["lost"].sum() == 1
    assert maps["contaminating_desi_elg"][_cell(gr, 0.225), _cell(rz, 0.525)] == 1
    assert maps["contaminating_desi_elg"].sum() == 1 and maps["true_desi_elg"].sum() == 1
    assert numbers["totals"]["contaminating_eboss_ngc"] == 0


def test_colours_type_mix_counts_each_type_along_each_colour():
    g, r, z = np.array([22.525, 22.525, 22.825]), np.array([22.2, 22.2, 22.2]), np.array([21.375, 21.375, 21.025])
    batch = {"obiwan_mask": np.array([1, 0, 1], np.uint8), "tractor_type": np.array([b"DEV", b"", b"EXP "])}
    for b, mags in (("g", g), ("r", r), ("z", z)):
        batch[f"{b}flux"] = _mag_flux(mags)
        batch[f"mw_transmission_{b}"] = np.ones(3, np.float32)
    acc = Colours(set(batch), np.random.default_rng(1), 100)
    acc.add(batch)
    numbers = acc.numbers()
    assert numbers["has_types"] and not numbers["has_targets"] and not numbers["has_measured"]
    assert numbers["totals"]["type_DEV"] == 1 and numbers["totals"]["type_EXP"] == 1
    # only the types present, each counted in its g-r and r-z bin
    assert set(numbers["types_vs_gr"]) == set(numbers["types_vs_rz"]) == {"EXP", "DEV"}
    assert numbers["types_vs_gr"]["DEV"][_cell(COLOUR_BINS["gr"], 0.325)] == 1
    assert numbers["types_vs_rz"]["DEV"][_cell(COLOUR_BINS["rz"], 0.825)] == 1
    assert numbers["types_vs_gr"]["EXP"][_cell(COLOUR_BINS["gr"], 0.625)] == 1
    assert numbers["types_vs_rz"]["EXP"][_cell(COLOUR_BINS["rz"], 1.175)] == 1
    assert sum(map(sum, numbers["types_vs_gr"].values())) == 2


def test_colours_from_truth_table_magnitudes():
    """A view with psql_g/r/z and no simcat fluxes: true colours from the truth table."""
    batch = {"obiwan_mask": np.array([1, 0], np.uint8), "psql_g": np.array([22.525, 22.9]),
             "psql_r": np.array([22.2, 22.3]), "psql_z": np.array([21.375, 21.075])}
    acc = Colours(set(batch), np.random.default_rng(1), 100)
    assert acc.missing is None and acc.columns() == ["obiwan_mask", "psql_g", "psql_r", "psql_z"]
    acc.add(batch)
    numbers = acc.numbers()
    assert numbers["maps"]["recovered"][_cell(COLOUR_BINS["gr"], 0.325)][_cell(COLOUR_BINS["rz"], 0.825)] == 1
    assert numbers["totals"]["lost"] == 1 and "psql_g" in numbers["magnitude_source"]
    assert Colours({"obiwan_mask", "psql_g", "psql_r"}, np.random.default_rng(1), 100).missing is not None


def test_inputs_discrete_property_is_counted_per_value():
    n = np.array([0, 1, 1, 4, 4, 4, 1, 1, 0, 0, 1, 1], np.float32)
    batch = {"obiwan_mask": np.array([1, 1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1], np.uint8), "n": n,
             "rhalf": np.linspace(0.2, 1.0, 12).astype(np.float32), "psql_g": np.full(12, 22.0)}
    acc = Inputs(set(batch), np.random.default_rng(1), 100)
    acc.add({key: values[:5] for key, values in batch.items()})
    acc.add({key: values[5:] for key, values in batch.items()})
    numbers = acc.numbers()
    discrete = numbers["properties"]["n"]["discrete"]
    assert discrete["values"] == [0.0, 1.0, 4.0]
    assert discrete["n"] == [3, 6, 3] and discrete["n_recovered"] == [1, 5, 1]
    assert np.allclose(discrete["fraction"], [1 / 3, 5 / 6, 1 / 3])
    assert numbers["properties"]["rhalf"]["discrete"] is None  # twelve distinct values: continuous
    # the true g magnitude from the truth table when the simcat flux is absent
    assert numbers["bands"]["g"]["n"][_cell(np.asarray(numbers["mag_bins"]), 22.0)] == 12
    assert numbers["bands"]["g"]["n_added"] is None and "psql_g" in numbers["magnitude_source"]
