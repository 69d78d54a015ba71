"""Accumulators of the thesis figure families (the original `plots_randomsprops_fluxdiff.py`):
input distributions and recovery vs injected properties (`Inputs`), per-type counts and
shape recovery (`Morphology`), and recovered / lost / contaminating sources in colour space
(`Colours`). Fixed histograms only: memory does not grow with the file.
"""

import numpy as np

from ..core.photometry import tractor_types
from ..core.selection import flux_to_mag
from ..fileformat import BANDS, TRACTOR_TYPES, injected_flux_column, is_recovered, is_selected
from .accumulate import (
    INJECTED_CLASSES,
    SELECTION_AXES,
    Accumulator,
    injected_classes,
    shown,
    type_index,
)
from .sources import MeasuredMagnitudes, TrueMagnitudes, injected_column, tractor_shape_column
from .stats import MAG_BINS, json_floats, json_ints, wilson_interval

__all__ = ["COLOUR_BINS", "INPUT_BINS", "Colours", "Inputs", "Morphology"]

# injected property -> bins of its distribution and of the recovered fraction
INPUT_BINS = {
    "rhalf": np.round(np.linspace(0.0, 3.0, 31), 6),
    "n": np.round(np.linspace(0.0, 6.0, 25), 6),
    "e1": np.round(np.linspace(-1.0, 1.0, 41), 6),
    "e2": np.round(np.linspace(-1.0, 1.0, 41), 6),
    "redshift": np.round(np.linspace(0.0, 2.0, 41), 6),
}
COLOUR_BINS = {"gr": np.round(np.linspace(-0.5, 2.0, 51), 6), "rz": np.round(np.linspace(-0.5, 2.5, 61), 6)}
# an injected property with at most this many distinct values is discrete (e.g. n = 0, 1, 4):
# counted per value, and drawn as points, not as a line through empty bins
MAX_DISCRETE = 8


def _hist_entry(bins, total, found):
    fraction, low, high = wilson_interval(found, total)
    return {"bins": json_floats(bins), "n": json_ints(total), "n_recovered": json_ints(found),
            "fraction": json_floats(fraction), "low": json_floats(low), "high": json_floats(high)}


class Inputs(Accumulator):
    """Injected distributions (all and recovered) of magnitudes — de-extincted, as added to
    the images (extincted), and as measured — colours and shapes, and the recovered fraction
    against each injected property."""

    name = "inputs"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask")
        self.mags = TrueMagnitudes(self.available)
        self.bands = self.mags.bands
        self.added = [b for b in self.bands if injected_flux_column(b) in self.available]
        self.measured = MeasuredMagnitudes(self.available, self.bands)
        self.props = {key: name for key in INPUT_BINS if (name := injected_column(self.available, key))}
        if not self.bands and not self.props and self.missing is None:
            self.missing = "no true magnitudes (simcat fluxes or psql_g/r/z) and no injected shape or redshift"
        nmag = len(MAG_BINS) - 1
        self.mag = {(b, kind): np.zeros(nmag, np.int64) for b in self.bands
                    for kind in ("true", "true_rec", "added", "measured")}
        self.colour = {(c, kind): np.zeros(len(COLOUR_BINS[c]) - 1, np.int64) for c in COLOUR_BINS
                       for kind in ("all", "rec")} if {"g", "r", "z"} <= set(self.bands) else {}
        self.prop = {(key, kind): np.zeros(len(INPUT_BINS[key]) - 1, np.int64) for key in self.props
                     for kind in ("all", "rec")}
        self.values = {key: {} for key in self.props}  # value -> [n, n_recovered]; None: not discrete

    def columns(self):
        """``obiwan_mask``, the true, added and measured magnitudes' columns, and the injected properties."""
        names = ["obiwan_mask"] + self.mags.columns() + [injected_flux_column(b) for b in self.added] + self.measured.columns()
        return list(dict.fromkeys(names + list(self.props.values())))

    def add(self, batch):
        """Histogram the batch's magnitudes, colours and injected properties, all and recovered."""
        recovered = is_recovered(batch["obiwan_mask"])
        self.rows += len(recovered)
        mags = {}
        for b in self.bands:
            mags[b] = self.mags(batch, b)
            self.mag[b, "true"] += np.histogram(mags[b], MAG_BINS)[0]
            self.mag[b, "true_rec"] += np.histogram(mags[b][recovered], MAG_BINS)[0]
            if b in self.added:
                self.mag[b, "added"] += np.histogram(flux_to_mag(batch[injected_flux_column(b)]), MAG_BINS)[0]
            if b in self.measured.bands:
                self.mag[b, "measured"] += np.histogram(self.measured(batch, b)[recovered], MAG_BINS)[0]
        if self.colour:
            for c, (one, two) in (("gr", ("g", "r")), ("rz", ("r", "z"))):
                value = mags[one] - mags[two]
                self.colour[c, "all"] += np.histogram(value, COLOUR_BINS[c])[0]
                self.colour[c, "rec"] += np.histogram(value[recovered], COLOUR_BINS[c])[0]
        for key, name in self.props.items():
            value = np.asarray(batch[name], np.float64)
            self.prop[key, "all"] += np.histogram(value, INPUT_BINS[key])[0]
            self.prop[key, "rec"] += np.histogram(value[recovered], INPUT_BINS[key])[0]
            self._count_values(key, value, recovered)

    def _count_values(self, key, value, recovered):
        counts = self.values[key]
        if counts is None:
            return
        finite = np.isfinite(value)
        distinct, which = np.unique(value[finite], return_inverse=True)
        if len(distinct) + len(counts) > 2 * MAX_DISCRETE:  # continuous: stop early, before any loop
            self.values[key] = None
            return
        n = np.bincount(which.ravel(), minlength=len(distinct))
        k = np.bincount(which.ravel(), weights=recovered[finite], minlength=len(distinct))
        for item, total, found in zip(distinct.tolist(), n, k):
            entry = counts.setdefault(item, [0, 0])
            entry[0] += int(total)
            entry[1] += int(round(found))
        if len(counts) > MAX_DISCRETE:
            self.values[key] = None

    def numbers(self):
        """Per band and per property: the histograms (all, recovered) and the recovered fraction."""
        result = {"n_rows": self.rows, "mag_bins": json_floats(MAG_BINS), "bands": {}, "colours": {},
                  "properties": {}, "columns": dict(self.props), "magnitude_source": self.mags.describe()}
        for b in self.bands:
            entry = _hist_entry(MAG_BINS, self.mag[b, "true"], self.mag[b, "true_rec"])
            entry["n_added"] = json_ints(self.mag[b, "added"]) if b in self.added else None
            entry["n_measured"] = json_ints(self.mag[b, "measured"]) if b in self.measured.bands else None
            result["bands"][b] = entry
        for c in COLOUR_BINS if self.colour else ():
            result["colours"][c] = _hist_entry(COLOUR_BINS[c], self.colour[c, "all"], self.colour[c, "rec"])
        for key in self.props:
            entry = _hist_entry(INPUT_BINS[key], self.prop[key, "all"], self.prop[key, "rec"])
            counts = self.values[key]
            entry["discrete"] = None
            if counts:
                values = sorted(counts)
                fraction, low, high = wilson_interval([counts[v][1] for v in values], [counts[v][0] for v in values])
                entry["discrete"] = {"values": values, "n": [counts[v][0] for v in values],
                                     "n_recovered": [counts[v][1] for v in values], "fraction": json_floats(fraction),
                                     "low": json_floats(low), "high": json_floats(high)}
            result["properties"][key] = entry
        return result

    def empty(self, numbers):
        """Why there is nothing to draw: no injected value inside the bins."""
        parts = list(numbers["bands"].values()) + list(numbers["properties"].values())
        return None if any(sum(part["n"]) for part in parts) else "no injected value inside the bins"


class Morphology(Accumulator):
    """Counts by injected morphology class (input, recovered) and by Tractor type (measured),
    and measured vs injected half-light radius and ellipticity of recovered sources."""

    name = "morphology"
    SHAPE_BINS = {"rhalf": INPUT_BINS["rhalf"], "e1": INPUT_BINS["e1"], "e2": INPUT_BINS["e2"]}
    # Tractor fits that do not measure the parameter: PSF has no shape, SIMP a fixed 0.45" round
    # profile, COMP two shapes; REX fits a radius but is round, so its e1 = e2 = 0 by construction
    NO_SHAPE = {"rhalf": [b"PSF", b"SIMP", b"COMP"], "e1": [b"PSF", b"SIMP", b"REX", b"COMP"],
                "e2": [b"PSF", b"SIMP", b"REX", b"COMP"]}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask", "tractor_type")
        self.shape_cols = {key: name for key in ("n", "rhalf") if (name := injected_column(self.available, key))}
        self.truth = {key: name for key in self.SHAPE_BINS if (name := injected_column(self.available, key))}
        self.input = np.zeros(len(INJECTED_CLASSES), np.int64)
        self.input_rec = np.zeros(len(INJECTED_CLASSES), np.int64)
        self.types = np.zeros(len(TRACTOR_TYPES) + 1, np.int64)
        self.versus = {key: np.zeros((len(bins) - 1, len(bins) - 1), np.int64) for key, bins in self.SHAPE_BINS.items()
                       if key in self.truth}
        self.rhalf_by_type = {kind: np.zeros(len(INPUT_BINS["rhalf"]) - 1, np.int64) for kind in TRACTOR_TYPES}

    def _measured(self, key):
        return tractor_shape_column("shapeexp", key), tractor_shape_column("shapedev", key)

    def columns(self):
        """``obiwan_mask``, ``tractor_type``, the injected shapes and the matching Tractor shapes."""
        names = ["obiwan_mask", "tractor_type"] + list(self.shape_cols.values()) + list(self.truth.values())
        for key in self.versus:
            names += [name for name in self._measured(key) if name in self.available]
        return list(dict.fromkeys(names))

    def add(self, batch):
        """Count the batch's injected classes and Tractor types; histogram measured vs injected shapes."""
        recovered = is_recovered(batch["obiwan_mask"])
        self.rows += len(recovered)
        classes = injected_classes(batch, self.shape_cols)
        self.input += np.bincount(classes, minlength=len(INJECTED_CLASSES))
        self.input_rec += np.bincount(classes[recovered], minlength=len(INJECTED_CLASSES))
        kinds = tractor_types(batch["tractor_type"])
        code = type_index(kinds)
        self.types += np.bincount(code[recovered], minlength=len(self.types))
        dev = kinds == b"DEV"
        for key in self.versus:
            exp_name, dev_name = self._measured(key)
            if exp_name not in batch or dev_name not in batch:
                continue
            measured = np.where(dev, np.asarray(batch[dev_name], np.float64), np.asarray(batch[exp_name], np.float64))
            chosen = recovered & ~np.isin(kinds, self.NO_SHAPE[key])
            truth = np.asarray(batch[self.truth[key]], np.float64)
            bins = self.SHAPE_BINS[key]
            self.versus[key] += np.histogram2d(truth[chosen], measured[chosen], [bins, bins])[0].astype(np.int64)
            if key == "rhalf":
                for index, kind in enumerate(TRACTOR_TYPES):
                    self.rhalf_by_type[kind] += np.histogram(truth[recovered & (code == index)], bins)[0]

    def numbers(self):
        """Class and type counts, and per shape parameter the measured-vs-injected histogram."""
        fraction, low, high = wilson_interval(self.input_rec, self.input)
        total = max(int(self.types.sum()), 1)
        result = {"n_rows": self.rows, "classes": list(INJECTED_CLASSES), "n_input": json_ints(self.input),
                  "n_recovered": json_ints(self.input_rec), "fraction": json_floats(fraction), "low": json_floats(low),
                  "high": json_floats(high), "types": list(TRACTOR_TYPES) + ["other"],
                  "n_measured_type": json_ints(self.types), "measured_type_fraction": json_floats(self.types / total),
                  "shape_convention": "measured: Tractor shapedev for DEV fits, shapeexp otherwise; fits without "
                                      "that shape parameter left out (rhalf: PSF, SIMP, COMP; e1/e2 also REX)",
                  "versus": {}, "rhalf_by_type": {},
                  # what the figure and the index table show: no space for empty categories
                  "classes_shown": shown(INJECTED_CLASSES, self.input),
                  "types_shown": shown(list(TRACTOR_TYPES) + ["other"], self.types)}
        for key, counts in self.versus.items():
            rows = counts.sum(axis=1)
            centres = 0.5 * (self.SHAPE_BINS[key][1:] + self.SHAPE_BINS[key][:-1])
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = counts @ centres / rows
            result["versus"][key] = {"bins": json_floats(self.SHAPE_BINS[key]), "counts": [json_ints(r) for r in counts],
                                     "mean_measured": json_floats(mean), "n": int(counts.sum())}
        if "rhalf" in self.versus:
            result["rhalf_by_type"] = {kind: json_ints(hist) for kind, hist in self.rhalf_by_type.items()}
        return result

    def empty(self, numbers):
        """Why there is nothing to draw: no injected source."""
        return None if self.rows else "no injected source"


class Colours(Accumulator):
    """g−r vs r−z of recovered and lost sources (true colours), of recovered sources by
    Tractor type, and of contaminating sources of each selection (measured-selected, not
    true-selected; measured colours)."""

    name = "colours"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask")
        self.mags = TrueMagnitudes(self.available)
        if len(self.mags.bands) < len(BANDS) and self.missing is None:
            self.missing = "no true g, r and z magnitudes (simcat fluxes or psql_g/r/z)"
        self.has_targets = "targets_mask" in self.available
        measured = MeasuredMagnitudes(self.available)
        self.measured = measured if len(measured.bands) == len(BANDS) else None
        shape = (len(COLOUR_BINS["gr"]) - 1, len(COLOUR_BINS["rz"]) - 1)
        self.has_types = "tractor_type" in self.available
        self.maps = {key: np.zeros(shape, np.int64) for key in ["recovered", "lost"]
                     + [f"contaminating_{sel}" for sel, _, _ in SELECTION_AXES]
                     + [f"true_{sel}" for sel, _, _ in SELECTION_AXES]
                     + ([f"type_{kind}" for kind in TRACTOR_TYPES] if self.has_types else [])}

    def columns(self):
        """``obiwan_mask``, the true magnitudes, and when there ``targets_mask``,
        ``tractor_type`` and the measured magnitudes."""
        names = ["obiwan_mask"] + self.mags.columns()
        if self.has_targets:
            names.append("targets_mask")
        if self.has_types:
            names.append("tractor_type")
        if self.measured and self.has_targets:
            names += self.measured.columns()
        return names

    def _hist(self, key, gr, rz, chosen):
        self.maps[key] += np.histogram2d(gr[chosen], rz[chosen], [COLOUR_BINS["gr"], COLOUR_BINS["rz"]])[0].astype(
            np.int64)

    def add(self, batch):
        """Add the batch's sources to the g−r vs r−z maps: recovered, lost, per type, true-
        selected and contaminating."""
        recovered = is_recovered(batch["obiwan_mask"])
        self.rows += len(recovered)
        mag = {b: self.mags(batch, b) for b in BANDS}
        gr, rz = mag["g"] - mag["r"], mag["r"] - mag["z"]
        self._hist("recovered", gr, rz, recovered)
        self._hist("lost", gr, rz, ~recovered)
        if self.has_types:
            kinds = tractor_types(batch["tractor_type"])
            for kind in TRACTOR_TYPES:
                self._hist(f"type_{kind}", gr, rz, recovered & (kinds == kind.encode()))
        if not self.has_targets:
            return
        targets = batch["targets_mask"]
        if self.measured:
            meas = {b: self.measured(batch, b) for b in BANDS}
            mgr, mrz = meas["g"] - meas["r"], meas["r"] - meas["z"]
        for sel, _, _ in SELECTION_AXES:
            true = is_selected(targets, sel, true=True)
            self._hist(f"true_{sel}", gr, rz, true)
            if self.measured:
                self._hist(f"contaminating_{sel}", mgr, mrz, is_selected(targets, sel) & ~true)

    def numbers(self):
        """The colour bins, every map's counts and totals, the recovered fraction per cell."""
        totals = {key: int(counts.sum()) for key, counts in self.maps.items()}
        with np.errstate(invalid="ignore", divide="ignore"):
            both = self.maps["recovered"] + self.maps["lost"]
            fraction = np.where(both > 0, self.maps["recovered"] / both, np.nan)
        types = shown(TRACTOR_TYPES, [totals.get(f"type_{kind}", 0) for kind in TRACTOR_TYPES])
        return {"n_rows": self.rows, "gr_bins": json_floats(COLOUR_BINS["gr"]), "rz_bins": json_floats(COLOUR_BINS["rz"]),
                "totals": totals, "maps": {key: [json_ints(row) for row in counts] for key, counts in self.maps.items()},
                "fraction_recovered": [json_floats(row) for row in fraction], "has_targets": self.has_targets,
                "has_types": self.has_types, "has_measured": self.measured is not None,
                "magnitude_source": self.mags.describe(),
                # recovered sources of each Tractor type per g-r and per r-z bin (the type mix)
                "types_vs_gr": {kind: json_ints(self.maps[f"type_{kind}"].sum(axis=1)) for kind in types},
                "types_vs_rz": {kind: json_ints(self.maps[f"type_{kind}"].sum(axis=0)) for kind in types},
                "convention": "recovered/lost/true-selected at true de-extincted colours; contaminating "
                              "(measured-selected, not true-selected) at measured de-extincted colours"}

    def empty(self, numbers):
        """Why there is no map: no injected source with true colours in the window."""
        if not numbers["totals"]["recovered"] + numbers["totals"]["lost"]:
            return "no injected source with true colours in the window"
        return None
