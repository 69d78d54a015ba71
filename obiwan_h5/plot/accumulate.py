"""Accumulators behind the analysis figures (`obiwan_h5.plot`), one per figure.

Each accumulator names the derived columns it needs (`columns`), is fed row batches
(`add`), gives the numbers behind its figure (`numbers`, JSON-ready) and says why they
are empty when they are (`empty`); drawing is in `plot.draw`. Nothing here keeps more
than fixed histograms and capped samples, so memory does not grow with the file.

Which columns serve a quantity (simcat fluxes or the truth table's ``psql_*`` for true
magnitudes, DR5 ``tractor_flux_g`` or DR3 ``tractor_decam_flux[:, 1]``) is decided by
`plot.sources`.
"""

import numpy as np

from ..core.photometry import band_quantity, tractor_types
from ..core.selection import MAGNITUDE_LIMITS
from ..fileformat import (
    BANDS,
    SELECTION_LABELS,
    SELECTIONS,
    TRACTOR_PREFIX,
    TRACTOR_TYPES,
    injected_flux_column,
    is_recovered,
    is_selected,
)
from .sources import TrueMagnitudes, injected_column, tractor_band_column
from .stats import MAG_BINS, Reservoir, crossing, json_floats, json_ints, robust_stats, wilson_interval

__all__ = [
    "BRICK_INDEX",
    "CHI_BINS",
    "INJECTED_CLASSES",
    "SELECTION_AXES",
    "Astrometry",
    "Confusion",
    "FluxResiduals",
    "Recovery",
    "Skymap",
    "Targets",
    "injected_classes",
    "injected_morphology",
    "shown",
    "type_index",
]

# key the figure runner adds to every batch (and summary table): the index of each row's
# brick in the file's brick list, known from the brick index without reading brickname
BRICK_INDEX = "_brick_index"
# bins of the normalised flux residual (measured - true) / sigma; exact counts
CHI_BINS = np.round(np.linspace(-6.0, 6.0, 61), 6)
# (selection, label, band of the magnitude axis: the band of its magnitude limits)
SELECTION_AXES = tuple((sel, SELECTION_LABELS[sel], MAGNITUDE_LIMITS[sel][0]) for sel in SELECTIONS)
# injected-morphology classes of the confusion matrix, see `injected_morphology`
INJECTED_CLASSES = ("PSF-like", "EXP-like", "DEV-like", "unknown")
PSF_RHALF_MAX = 0.05  # arcsec
PSF_SERSIC_MAX = 0.5
DEV_SERSIC_MIN = 2.5
TYPE_COLUMNS = TRACTOR_TYPES + ("other", "unrecovered")


def shown(names, counts):
    """The categories worth a place in a figure: those with a non-zero count."""
    return [name for name, count in zip(names, counts) if count]


def injected_morphology(n, rhalf):
    """Class index into `INJECTED_CLASSES` from the injected Sérsic index and half-light radius.

    PSF-like: rhalf < 0.05 arcsec or n < 0.5 (a point source); otherwise EXP-like when
    n < 2.5 (exponential, n≈1) and DEV-like when n ≥ 2.5 (de Vaucouleurs, n≈4); unknown
    when that cannot be decided (n not finite and rhalf not small). `n` or `rhalf` may be None
    (column absent); with both absent the result is None, and `Confusion` then counts every
    source as PSF-like (star simcats have no shape columns).
    """
    if n is None and rhalf is None:
        return None
    size = len(n if n is not None else rhalf)
    n = np.full(size, np.nan) if n is None else np.asarray(n, np.float64)
    rhalf = np.full(size, np.nan) if rhalf is None else np.asarray(rhalf, np.float64)
    with np.errstate(invalid="ignore"):
        point = (rhalf < PSF_RHALF_MAX) | (n < PSF_SERSIC_MAX)
        return np.select([point, n >= DEV_SERSIC_MIN, n >= PSF_SERSIC_MAX], [0, 2, 1], 3)


def injected_classes(batch, shape_columns):
    """Each row's class in `INJECTED_CLASSES` (`injected_morphology`), from the columns
    `shape_columns` (``{"n": name, "rhalf": name}``, either may be absent) of `batch`; every
    row PSF-like when there are none."""
    shape = {key: batch[name] for key, name in shape_columns.items()}
    classes = injected_morphology(shape.get("n"), shape.get("rhalf"))
    return np.zeros(len(batch["obiwan_mask"]), np.int64) if classes is None else classes


def type_index(kinds):
    """Each row's Tractor type (`core.photometry.tractor_types` bytes) as its index in
    `TRACTOR_TYPES`; ``len(TRACTOR_TYPES)`` (``"other"`` of `TYPE_COLUMNS`) for any other."""
    index = np.full(len(kinds), len(TRACTOR_TYPES))
    for number, kind in enumerate(TRACTOR_TYPES):
        index[kinds == kind.encode()] = number
    return index


def _ratio(k, n):
    return float(k) / float(n) if n else None


class Accumulator:
    """Base class: `name`, the columns it reads, why it cannot run (`missing`), why its
    numbers are empty (`empty`)."""

    name = ""

    def __init__(self, available, rng, capacity, match_radius=1.0):
        self.available = set(available)
        self.rng = rng
        self.capacity = capacity
        self.match_radius = match_radius
        self.missing = None  # reason the figure cannot be made from this file, or None
        self.rows = 0

    def columns(self):
        """The derived columns `add` reads (none for a figure made from the summary table)."""
        return []

    def _require(self, *names):
        absent = [name for name in names if name not in self.available]
        if absent and self.missing is None:
            self.missing = f"column {absent[0]} is not in the file"
        return not absent

    def add(self, batch):
        """Take one batch of rows (column name -> array, the columns of `columns`)."""
        pass

    def numbers(self):
        """The numbers behind the figure, JSON-ready (``numbers.json``, the captions, the drawer)."""
        return {}

    def empty(self, numbers):
        """Why `numbers` hold nothing to draw although rows were read, or None when they do."""
        return None


class Recovery(Accumulator):
    """Injected and recovered counts in bins of true magnitude, per band."""

    name = "recovery"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask")
        self.mags = TrueMagnitudes(self.available)
        self.bands = self.mags.bands
        if not self.bands and self.missing is None:
            self.missing = "no true magnitudes: neither simcat <b>flux with mw_transmission_<b> nor psql_<b>"
        nbins = len(MAG_BINS) - 1
        self.total = {b: np.zeros(nbins, np.int64) for b in self.bands}
        self.found = {b: np.zeros(nbins, np.int64) for b in self.bands}
        self.outside = {b: 0 for b in self.bands}
        self.recovered = 0

    def columns(self):
        """``obiwan_mask`` and the columns of the true magnitudes."""
        return ["obiwan_mask"] + self.mags.columns()

    def add(self, batch):
        """Count the batch's injected and recovered sources per band and true-magnitude bin."""
        recovered = is_recovered(batch["obiwan_mask"])
        self.rows += len(recovered)
        self.recovered += int(recovered.sum())
        for b in self.bands:
            mag = self.mags(batch, b)
            inside = (mag >= MAG_BINS[0]) & (mag <= MAG_BINS[-1])
            self.outside[b] += int((~inside).sum())
            self.total[b] += np.histogram(mag[inside], MAG_BINS)[0]
            self.found[b] += np.histogram(mag[inside & recovered], MAG_BINS)[0]

    def numbers(self):
        """Per band: counts, recovered fraction with its Wilson interval per bin, and the 50% magnitude."""
        centres = 0.5 * (MAG_BINS[1:] + MAG_BINS[:-1])
        bands = {}
        for b in self.bands:
            fraction, low, high = wilson_interval(self.found[b], self.total[b])
            bands[b] = {"n": json_ints(self.total[b]), "n_recovered": json_ints(self.found[b]),
                        "fraction": json_floats(fraction), "low": json_floats(low), "high": json_floats(high),
                        "mag50": crossing(centres, fraction, self.total[b]),
                        "n_outside_bins": self.outside[b], "magnitude_source": self.mags.source(b)}
        return {"bins": json_floats(MAG_BINS), "n_rows": self.rows, "n_recovered": self.recovered,
                "fraction_recovered": _ratio(self.recovered, self.rows),
                "magnitude_source": self.mags.describe(), "bands": bands}

    def empty(self, numbers):
        """Why there is no curve: no injected source with a true magnitude in the bins."""
        if not any(sum(band["n"]) for band in numbers["bands"].values()):
            return "no injected source with a true magnitude in 16-28"
        return None


class FluxResiduals(Accumulator):
    """Measured − true flux of recovered sources, raw and divided by σ, per band.

    Convention: both fluxes as in the images (extincted): Tractor ``flux`` minus the simcat
    flux as added (``gflux``...); σ = 1/√flux_ivar of the Tractor flux.
    """

    name = "flux_residuals"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask")
        self.cols = {}
        for b in BANDS:
            flux, ivar = (tractor_band_column(self.available, q, b) for q in ("flux", "flux_ivar"))
            if flux and ivar and injected_flux_column(b) in self.available:
                self.cols[b] = (injected_flux_column(b), flux, ivar)
        if not self.cols and self.missing is None:
            self.missing = "no band has both simcat and Tractor flux/flux_ivar columns"
        self.bands = list(self.cols)
        self.used = {b: 0 for b in self.bands}
        self.excluded = {b: 0 for b in self.bands}
        self.chi_hist = {b: np.zeros(len(CHI_BINS) - 1, np.int64) for b in self.bands}
        self.chi_outside = {b: 0 for b in self.bands}
        self.sample = {b: Reservoir(self.capacity, self.rng, ("delta", "chi")) for b in self.bands}

    def columns(self):
        """``obiwan_mask`` and, per band, the simcat flux and the Tractor flux and flux_ivar."""
        names = ["obiwan_mask"]
        for triple in self.cols.values():
            names.extend(name for name in triple if name not in names)
        return names

    def add(self, batch):
        """Histogram and sample the flux residuals (raw and over σ) of the batch's recovered sources."""
        recovered = is_recovered(batch["obiwan_mask"])
        self.rows += int(recovered.sum())
        for b in self.bands:
            true = np.asarray(batch[injected_flux_column(b)], np.float64)[recovered]
            measured = np.asarray(band_quantity(batch, "flux", b, TRACTOR_PREFIX), np.float64)[recovered]
            ivar = np.asarray(band_quantity(batch, "flux_ivar", b, TRACTOR_PREFIX), np.float64)[recovered]
            delta = measured - true
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(delta) & np.isfinite(ivar) & (ivar > 0)
            delta, chi = delta[ok], delta[ok] * np.sqrt(ivar[ok])
            self.used[b] += int(ok.sum())
            self.excluded[b] += int((~ok).sum())
            inside = (chi >= CHI_BINS[0]) & (chi <= CHI_BINS[-1])
            self.chi_outside[b] += int((~inside).sum())
            self.chi_hist[b] += np.histogram(chi[inside], CHI_BINS)[0]
            self.sample[b].add(delta=delta, chi=chi)

    def numbers(self):
        """Per band: robust median and σ of the residuals, their σ-normalised histogram, the sample size."""
        bands = {}
        for b in self.bands:
            sample = self.sample[b]
            median_delta, sigma_delta = robust_stats(sample.data["delta"])
            median_chi, sigma_chi = robust_stats(sample.data["chi"])
            bands[b] = {"n": self.used[b], "n_excluded_no_ivar": self.excluded[b],
                        "median_delta": median_delta, "sigma_delta": sigma_delta,
                        "median_chi": median_chi, "sigma_chi": sigma_chi,
                        "chi_hist": json_ints(self.chi_hist[b]), "n_chi_outside_bins": self.chi_outside[b],
                        "n_sample": sample.size, "sample_complete": sample.complete}
        return {"convention": "Tractor flux minus simcat flux as added to the images; both extincted "
                              "(neither divided by mw_transmission); sigma = 1/sqrt(flux_ivar)",
                "unit": "nanomaggy", "chi_bins": json_floats(CHI_BINS), "n_recovered": self.rows, "bands": bands}

    def empty(self, numbers):
        """Why there is no histogram: no recovered source with a flux and a positive flux_ivar."""
        if not any(band["n"] for band in numbers["bands"].values()):
            return "no recovered source with a measured flux and flux_ivar > 0"
        return None


class Astrometry(Accumulator):
    """Δra·cos(dec) and Δdec (Tractor − injected) of recovered sources, arcsec."""

    name = "astrometry"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask", "ra", "dec", "tractor_ra", "tractor_dec")
        self.sample = Reservoir(self.capacity, self.rng, ("dra", "ddec"))

    def columns(self):
        """``obiwan_mask`` and the injected and Tractor positions."""
        return ["obiwan_mask", "ra", "dec", "tractor_ra", "tractor_dec"]

    def add(self, batch):
        """Sample Δra·cos(dec) and Δdec (arcsec) of the batch's recovered sources."""
        keep = is_recovered(batch["obiwan_mask"])
        ra, dec = (np.asarray(batch[name], np.float64)[keep] for name in ("ra", "dec"))
        tra, tdec = (np.asarray(batch[name], np.float64)[keep] for name in ("tractor_ra", "tractor_dec"))
        dra = ((tra - ra + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec)) * 3600.0
        ddec = (tdec - dec) * 3600.0
        ok = np.isfinite(dra) & np.isfinite(ddec)
        self.rows += int(ok.sum())
        self.sample.add(dra=dra[ok], ddec=ddec[ok])

    def numbers(self):
        """Robust medians and σ of both offsets, the median separation, the match radius."""
        data = self.sample.data
        median_dra, sigma_dra = robust_stats(data["dra"])
        median_ddec, sigma_ddec = robust_stats(data["ddec"])
        separation = np.hypot(data["dra"], data["ddec"])
        return {"unit": "arcsec", "n": self.rows, "median_dra": median_dra, "sigma_dra": sigma_dra,
                "median_ddec": median_ddec, "sigma_ddec": sigma_ddec,
                "median_separation": float(np.median(separation)) if len(separation) else None,
                "match_radius": self.match_radius,
                "n_sample": self.sample.size, "sample_complete": self.sample.complete}

    def empty(self, numbers):
        """Why there is no scatter: no recovered source."""
        return None if numbers["n"] else "no recovered source"


class Confusion(Accumulator):
    """Counts of injected morphology class × Tractor type (plus unrecovered)."""

    name = "confusion"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask", "tractor_type")
        self.shape_cols = {key: name for key in ("n", "rhalf") if (name := injected_column(self.available, key))}
        self.counts = np.zeros((len(INJECTED_CLASSES), len(TYPE_COLUMNS)), np.int64)

    def columns(self):
        """``obiwan_mask``, ``tractor_type`` and the injected shape columns found."""
        return ["obiwan_mask", "tractor_type"] + list(self.shape_cols.values())

    @property
    def morphology_source(self):
        """Which columns the injected morphology is read from, for the caption."""
        if not self.shape_cols:
            return "no n/rhalf columns: all sources taken as PSF-like (stars)"
        return ", ".join(f"{key} from column {name}" for key, name in self.shape_cols.items())

    def add(self, batch):
        """Count the batch's sources per injected class and Tractor type (or unrecovered)."""
        recovered = is_recovered(batch["obiwan_mask"])
        self.rows += len(recovered)
        classes = injected_classes(batch, self.shape_cols)
        column = type_index(tractor_types(batch["tractor_type"]))
        column[~recovered] = TYPE_COLUMNS.index("unrecovered")
        flat = classes * len(TYPE_COLUMNS) + column
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def numbers(self):
        """The counts and row fractions of the matrix, the categories worth showing, the mapping."""
        totals = self.counts.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            fractions = self.counts / totals[:, None]
        return {"rows": list(INJECTED_CLASSES), "columns": list(TYPE_COLUMNS),
                "counts": [json_ints(row) for row in self.counts],
                "fractions": [json_floats(row) for row in fractions], "n": self.rows,
                # what the figure and the index table show: no space for empty categories
                "rows_shown": shown(INJECTED_CLASSES, totals),
                "columns_shown": shown(TYPE_COLUMNS, self.counts.sum(axis=0)),
                "mapping": f"PSF-like: rhalf < {PSF_RHALF_MAX} arcsec or n < {PSF_SERSIC_MAX}; "
                           f"EXP-like: {PSF_SERSIC_MAX} <= n < {DEV_SERSIC_MIN}; DEV-like: n >= {DEV_SERSIC_MIN}; "
                           "unknown: n not finite and rhalf not small",
                "morphology_source": self.morphology_source}

    def empty(self, numbers):
        """Why there is no matrix: no injected source."""
        return None if numbers["n"] else "no injected source"


_GROUPS = ("true", "both", "measured", "false")


class Targets(Accumulator):
    """True vs measured target selection in bins of true magnitude, per selection.

    Beyond a selection's own magnitude limits (`selection.MAGNITUDE_LIMITS`, e.g. r < 23.4
    for DESI ELG) no source is true-selected, so every measured-selected source there is a
    contaminant by definition: the contamination of those bins is left undefined (None) and
    their sources are counted apart (``n_measured_beyond_cut``).
    """

    name = "targets"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("targets_mask")
        self.mags = TrueMagnitudes(self.available, bands=("r", "g"))
        self.selections = [(sel, label, b) for sel, label, b in SELECTION_AXES if b in self.mags.bands]
        if not self.selections and self.missing is None:
            self.missing = "no true g or r magnitudes (simcat flux with mw_transmission, or psql_g/psql_r)"
        nbins = len(MAG_BINS) - 1
        self.hist = {sel: {key: np.zeros(nbins, np.int64) for key in _GROUPS} for sel, _, _ in self.selections}
        self.totals = {sel: dict.fromkeys(_GROUPS + ("beyond",), 0) for sel, _, _ in self.selections}

    def columns(self):
        """``targets_mask`` and the true magnitudes of the selections' bands."""
        return ["targets_mask"] + self.mags.columns(sorted({b for _, _, b in self.selections}))

    def add(self, batch):
        """Count the batch's true-, measured- and both-selected sources per selection and magnitude bin."""
        mask = batch["targets_mask"]
        self.rows += len(mask)
        mags = {}
        for sel, _, b in self.selections:
            if b not in mags:
                mags[b] = self.mags(batch, b)
            mag = mags[b]
            true = is_selected(mask, sel, true=True)
            measured = is_selected(mask, sel)
            groups = {"true": true, "both": true & measured, "measured": measured, "false": measured & ~true}
            inside = (mag >= MAG_BINS[0]) & (mag <= MAG_BINS[-1])
            for key, chosen in groups.items():
                self.totals[sel][key] += int(chosen.sum())
                self.hist[sel][key] += np.histogram(mag[inside & chosen], MAG_BINS)[0]
            _, brightest, faintest = MAGNITUDE_LIMITS[sel]
            with np.errstate(invalid="ignore"):
                beyond = measured & ((mag < brightest) | (mag > faintest))
            self.totals[sel]["beyond"] += int(beyond.sum())

    def numbers(self):
        """Per selection: totals, completeness and contamination overall and per bin, with intervals."""
        bands = sorted({b for _, _, b in self.selections}, reverse=True)
        result = {"bins": json_floats(MAG_BINS), "n_rows": self.rows, "magnitude_source": self.mags.describe(bands),
                  "selections": {}}
        for sel, label, b in self.selections:
            hist, totals = self.hist[sel], self.totals[sel]
            _, brightest, faintest = MAGNITUDE_LIMITS[sel]
            # bins wholly beyond the selection's magnitude limits: contamination 1 by definition
            beyond = (MAG_BINS[1:] <= brightest) | (MAG_BINS[:-1] >= faintest)
            comp, comp_lo, comp_hi = wilson_interval(hist["both"], hist["true"])
            cont, cont_lo, cont_hi = (np.where(beyond, np.nan, values)
                                      for values in wilson_interval(hist["false"], hist["measured"]))
            result["selections"][sel] = {
                "label": label, "band": b, "magnitude_source": self.mags.source(b),
                "magnitude_limits": json_floats([brightest, faintest]),
                "n_true": totals["true"], "n_measured": totals["measured"], "n_true_and_measured": totals["both"],
                "n_measured_not_true": totals["false"], "n_measured_beyond_cut": totals["beyond"],
                "completeness": _ratio(totals["both"], totals["true"]),
                "contamination": _ratio(totals["false"], totals["measured"]),
                "contamination_within_cut": _ratio(totals["false"] - totals["beyond"],
                                                   totals["measured"] - totals["beyond"]),
                "hist_true": json_ints(hist["true"]), "hist_true_and_measured": json_ints(hist["both"]),
                "hist_measured": json_ints(hist["measured"]), "hist_measured_not_true": json_ints(hist["false"]),
                "completeness_bins": json_floats(comp), "completeness_low": json_floats(comp_lo),
                "completeness_high": json_floats(comp_hi), "contamination_bins": json_floats(cont),
                "contamination_low": json_floats(cont_lo), "contamination_high": json_floats(cont_hi)}
        return result

    def empty(self, numbers):
        """Why there is no curve: no source selected, on true or on measured fluxes."""
        if not any(d["n_true"] or d["n_measured"] for d in numbers["selections"].values()):
            return "no source selected as a target, on true or on measured fluxes"
        return None


class Skymap(Accumulator):
    """Per-brick summary values at brick centres (from the small summary table, not streamed)."""

    name = "skymap"
    SUMMARY = ("ra", "dec", "frac_recovered", "galdepth_g")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.table = {}

    def set_summary(self, table, summary_columns):
        """Keep the `SUMMARY` columns of the chosen bricks' summary rows (or say which is missing)."""
        absent = [name for name in self.SUMMARY if name not in summary_columns]
        if absent:
            self.missing = f"summary column {absent[0]} is not in the file"
            return
        self.table = {name: np.asarray(values, np.float64) for name, values in table.items()
                      if name in self.SUMMARY + ("brick_area",)}

    def numbers(self):
        """The bricks shown, and the median, minimum and maximum of each mapped value."""
        n = len(self.table.get("ra", ()))
        result = {"n_bricks": n}
        for name in ("frac_recovered", "galdepth_g"):
            values = self.table.get(name, np.zeros(0))
            values = values[np.isfinite(values)]
            result[name] = {"median": float(np.median(values)) if len(values) else None,
                            "min": float(values.min()) if len(values) else None,
                            "max": float(values.max()) if len(values) else None}
        return result

    def empty(self, numbers):
        """Why there is no map: no done brick chosen."""
        return None if numbers["n_bricks"] else "no done brick chosen"
