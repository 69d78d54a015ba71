"""Accumulators behind the analysis figures (`obiwan_h5.plot`), one per figure.

Each accumulator names the derived columns it needs (`columns`), is fed row batches
(`add`), and gives the numbers behind its figure (`numbers`, JSON-ready) — drawing is in
`obiwan_h5.plot_draw`. Nothing here keeps more than fixed histograms and capped samples,
so memory does not grow with the file.

Tractor per-band quantities are read through `photometry.band_quantity`, so DR5-schema
(``tractor_flux_g``) and DR3-schema (``tractor_decam_flux[:, 1]``) files both work.
"""

import numpy as np

from ..core.photometry import QUANTITIES, band_quantity, tractor_types, true_flux
from ..core.selection import flux_to_mag
from ..fileformat import BANDS, OBIWAN_BITS, TARGET_BITS, TRACTOR_TYPES, bit_set
from .stats import MAG_BINS, Reservoir, crossing, robust_stats, wilson_interval

__all__ = [
    "ACCUMULATORS",
    "CHI_BINS",
    "INJECTED_CLASSES",
    "SELECTIONS",
    "Astrometry",
    "Confusion",
    "FluxResiduals",
    "Recovery",
    "Skymap",
    "Targets",
    "injected_morphology",
    "tractor_band_column",
    "true_magnitude",
]

RECOVERED_BIT = OBIWAN_BITS["recovered"][0]
# bins of the normalised flux residual (measured - true) / sigma; exact counts
CHI_BINS = np.round(np.linspace(-6.0, 6.0, 61), 6)
# (selection, label, band of the magnitude axis)
SELECTIONS = (("desi_elg", "DESI ELG", "r"), ("eboss_ngc", "eBOSS ELG NGC", "g"),
              ("eboss_sgc", "eBOSS ELG SGC", "g"))
# injected-morphology classes of the confusion matrix, see `injected_morphology`
INJECTED_CLASSES = ("PSF-like", "EXP-like", "DEV-like", "unknown")
PSF_RHALF_MAX = 0.05  # arcsec
PSF_SERSIC_MAX = 0.5
DEV_SERSIC_MIN = 2.5
TYPE_COLUMNS = TRACTOR_TYPES + ("other", "unrecovered")


def true_magnitude(batch, band):
    """True de-extincted AB magnitude: simcat flux (as added) / mw_transmission."""
    return flux_to_mag(true_flux(batch, band))


def tractor_band_column(available, quantity, band):
    """The derived column holding a Tractor quantity of one band (DR5 scalar or DR3 array)."""
    stem, decam = QUANTITIES[quantity]
    for name in (f"tractor_{stem}_{band}", f"tractor_{decam}"):
        if name in available:
            return name
    return None


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


def _ints(values):
    return [int(v) for v in values]


def _floats(values):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, np.float64)]


def _ratio(k, n):
    return float(k) / float(n) if n else None


class Accumulator:
    """Base class: `name`, the columns it reads, why it cannot run (`missing`)."""

    name = ""

    def __init__(self, available, rng, capacity, match_radius=1.0):
        self.available = set(available)
        self.rng = rng
        self.capacity = capacity
        self.match_radius = match_radius
        self.missing = None  # reason the figure has no data at all, or None
        self.rows = 0

    def columns(self):
        return []

    def _require(self, *names):
        absent = [name for name in names if name not in self.available]
        if absent and self.missing is None:
            self.missing = f"column {absent[0]} is not in the file"
        return not absent

    def add(self, batch):
        pass

    def numbers(self):
        return {}


class Recovery(Accumulator):
    """Injected and recovered counts in bins of true magnitude, per band."""

    name = "recovery"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask")
        self.bands = [b for b in BANDS if {f"{b}flux", f"mw_transmission_{b}"} <= self.available]
        nbins = len(MAG_BINS) - 1
        self.total = {b: np.zeros(nbins, np.int64) for b in self.bands}
        self.found = {b: np.zeros(nbins, np.int64) for b in self.bands}
        self.outside = {b: 0 for b in self.bands}
        self.recovered = 0

    def columns(self):
        names = ["obiwan_mask"]
        for b in self.bands:
            names += [f"{b}flux", f"mw_transmission_{b}"]
        return names

    def add(self, batch):
        recovered = bit_set(batch["obiwan_mask"], RECOVERED_BIT)
        self.rows += len(recovered)
        self.recovered += int(recovered.sum())
        for b in self.bands:
            mag = true_magnitude(batch, b)
            inside = (mag >= MAG_BINS[0]) & (mag <= MAG_BINS[-1])
            self.outside[b] += int((~inside).sum())
            self.total[b] += np.histogram(mag[inside], MAG_BINS)[0]
            self.found[b] += np.histogram(mag[inside & recovered], MAG_BINS)[0]

    def numbers(self):
        centres = 0.5 * (MAG_BINS[1:] + MAG_BINS[:-1])
        bands = {}
        for b in self.bands:
            fraction, low, high = wilson_interval(self.found[b], self.total[b])
            bands[b] = {"n": _ints(self.total[b]), "n_recovered": _ints(self.found[b]),
                        "fraction": _floats(fraction), "low": _floats(low), "high": _floats(high),
                        "mag50": crossing(centres, fraction, self.total[b]),
                        "n_outside_bins": self.outside[b]}
        return {"bins": _floats(MAG_BINS), "n_rows": self.rows, "n_recovered": self.recovered,
                "fraction_recovered": _ratio(self.recovered, self.rows), "bands": bands}


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
            if flux and ivar and f"{b}flux" in self.available:
                self.cols[b] = (f"{b}flux", flux, ivar)
        if not self.cols and self.missing is None:
            self.missing = "no band has both simcat and Tractor flux/flux_ivar columns"
        self.bands = list(self.cols)
        self.used = {b: 0 for b in self.bands}
        self.excluded = {b: 0 for b in self.bands}
        self.chi_hist = {b: np.zeros(len(CHI_BINS) - 1, np.int64) for b in self.bands}
        self.chi_outside = {b: 0 for b in self.bands}
        self.sample = {b: Reservoir(self.capacity, self.rng, ("delta", "chi")) for b in self.bands}

    def columns(self):
        names = ["obiwan_mask"]
        for triple in self.cols.values():
            names.extend(name for name in triple if name not in names)
        return names

    def add(self, batch):
        recovered = bit_set(batch["obiwan_mask"], RECOVERED_BIT)
        self.rows += int(recovered.sum())
        for b in self.bands:
            true = np.asarray(batch[f"{b}flux"], np.float64)[recovered]
            measured = np.asarray(band_quantity(batch, "flux", b, "tractor_"), np.float64)[recovered]
            ivar = np.asarray(band_quantity(batch, "flux_ivar", b, "tractor_"), np.float64)[recovered]
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
        bands = {}
        for b in self.bands:
            sample = self.sample[b]
            median_delta, sigma_delta = robust_stats(sample.data["delta"])
            median_chi, sigma_chi = robust_stats(sample.data["chi"])
            bands[b] = {"n": self.used[b], "n_excluded_no_ivar": self.excluded[b],
                        "median_delta": median_delta, "sigma_delta": sigma_delta,
                        "median_chi": median_chi, "sigma_chi": sigma_chi,
                        "chi_hist": _ints(self.chi_hist[b]), "n_chi_outside_bins": self.chi_outside[b],
                        "n_sample": sample.size, "sample_complete": sample.complete}
        return {"convention": "Tractor flux minus simcat flux as added to the images; both extincted "
                              "(neither divided by mw_transmission); sigma = 1/sqrt(flux_ivar)",
                "unit": "nanomaggy", "chi_bins": _floats(CHI_BINS), "n_recovered": self.rows, "bands": bands}


class Astrometry(Accumulator):
    """Δra·cos(dec) and Δdec (Tractor − injected) of recovered sources, arcsec."""

    name = "astrometry"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask", "ra", "dec", "tractor_ra", "tractor_dec")
        self.sample = Reservoir(self.capacity, self.rng, ("dra", "ddec"))

    def columns(self):
        return ["obiwan_mask", "ra", "dec", "tractor_ra", "tractor_dec"]

    def add(self, batch):
        keep = bit_set(batch["obiwan_mask"], RECOVERED_BIT)
        ra, dec = (np.asarray(batch[name], np.float64)[keep] for name in ("ra", "dec"))
        tra, tdec = (np.asarray(batch[name], np.float64)[keep] for name in ("tractor_ra", "tractor_dec"))
        dra = ((tra - ra + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec)) * 3600.0
        ddec = (tdec - dec) * 3600.0
        ok = np.isfinite(dra) & np.isfinite(ddec)
        self.rows += int(ok.sum())
        self.sample.add(dra=dra[ok], ddec=ddec[ok])

    def numbers(self):
        data = self.sample.data
        median_dra, sigma_dra = robust_stats(data["dra"])
        median_ddec, sigma_ddec = robust_stats(data["ddec"])
        separation = np.hypot(data["dra"], data["ddec"])
        return {"unit": "arcsec", "n": self.rows, "median_dra": median_dra, "sigma_dra": sigma_dra,
                "median_ddec": median_ddec, "sigma_ddec": sigma_ddec,
                "median_separation": float(np.median(separation)) if len(separation) else None,
                "match_radius": self.match_radius,
                "n_sample": self.sample.size, "sample_complete": self.sample.complete}


class Confusion(Accumulator):
    """Counts of injected morphology class × Tractor type (plus unrecovered)."""

    name = "confusion"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask", "tractor_type")
        self.shape_cols = {}
        for key in ("n", "rhalf"):
            for name in (key, f"psql_{key}"):
                if name in self.available:
                    self.shape_cols[key] = name
                    break
        self.counts = np.zeros((len(INJECTED_CLASSES), len(TYPE_COLUMNS)), np.int64)

    def columns(self):
        return ["obiwan_mask", "tractor_type"] + list(self.shape_cols.values())

    @property
    def morphology_source(self):
        if not self.shape_cols:
            return "no n/rhalf columns: all sources taken as PSF-like (stars)"
        return ", ".join(f"{key} from column {name}" for key, name in self.shape_cols.items())

    def add(self, batch):
        recovered = bit_set(batch["obiwan_mask"], RECOVERED_BIT)
        self.rows += len(recovered)
        shape = {key: batch[name] for key, name in self.shape_cols.items()}
        classes = injected_morphology(shape.get("n"), shape.get("rhalf"))
        if classes is None:
            classes = np.zeros(len(recovered), np.int64)
        kinds = tractor_types(batch["tractor_type"])
        column = np.full(len(recovered), TYPE_COLUMNS.index("other"))
        for index, kind in enumerate(TRACTOR_TYPES):
            column[kinds == kind.encode()] = index
        column[~recovered] = TYPE_COLUMNS.index("unrecovered")
        flat = classes * len(TYPE_COLUMNS) + column
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def numbers(self):
        totals = self.counts.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            fractions = self.counts / totals[:, None]
        return {"rows": list(INJECTED_CLASSES), "columns": list(TYPE_COLUMNS),
                "counts": [_ints(row) for row in self.counts],
                "fractions": [_floats(row) for row in fractions], "n": self.rows,
                "mapping": f"PSF-like: rhalf < {PSF_RHALF_MAX} arcsec or n < {PSF_SERSIC_MAX}; "
                           f"EXP-like: {PSF_SERSIC_MAX} <= n < {DEV_SERSIC_MIN}; DEV-like: n >= {DEV_SERSIC_MIN}; "
                           "unknown: n not finite and rhalf not small",
                "morphology_source": self.morphology_source}


class Targets(Accumulator):
    """True vs measured target selection in bins of true magnitude, per selection."""

    name = "targets"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("targets_mask")
        self.selections = [(sel, label, b) for sel, label, b in SELECTIONS
                           if {f"{b}flux", f"mw_transmission_{b}"} <= self.available]
        if not self.selections and self.missing is None:
            self.missing = "no simcat g/r flux columns for the magnitude axis"
        nbins = len(MAG_BINS) - 1
        self.hist = {sel: {key: np.zeros(nbins, np.int64) for key in ("true", "both", "measured", "false")}
                     for sel, _, _ in self.selections}
        self.totals = {sel: dict.fromkeys(("true", "both", "measured", "false"), 0) for sel, _, _ in self.selections}

    def columns(self):
        names = ["targets_mask"]
        for _, _, b in self.selections:
            names.extend(name for name in (f"{b}flux", f"mw_transmission_{b}") if name not in names)
        return names

    def add(self, batch):
        mask = batch["targets_mask"]
        self.rows += len(mask)
        mags = {}
        for sel, _, b in self.selections:
            if b not in mags:
                mags[b] = true_magnitude(batch, b)
            mag = mags[b]
            true = bit_set(mask, TARGET_BITS[f"{sel}_true"])
            measured = bit_set(mask, TARGET_BITS[sel])
            groups = {"true": true, "both": true & measured, "measured": measured, "false": measured & ~true}
            inside = (mag >= MAG_BINS[0]) & (mag <= MAG_BINS[-1])
            for key, chosen in groups.items():
                self.totals[sel][key] += int(chosen.sum())
                self.hist[sel][key] += np.histogram(mag[inside & chosen], MAG_BINS)[0]

    def numbers(self):
        result = {"bins": _floats(MAG_BINS), "n_rows": self.rows, "selections": {}}
        for sel, label, b in self.selections:
            hist, totals = self.hist[sel], self.totals[sel]
            comp, comp_lo, comp_hi = wilson_interval(hist["both"], hist["true"])
            cont, cont_lo, cont_hi = wilson_interval(hist["false"], hist["measured"])
            result["selections"][sel] = {
                "label": label, "band": b,
                "n_true": totals["true"], "n_measured": totals["measured"], "n_true_and_measured": totals["both"],
                "n_measured_not_true": totals["false"],
                "completeness": _ratio(totals["both"], totals["true"]),
                "contamination": _ratio(totals["false"], totals["measured"]),
                "hist_true": _ints(hist["true"]), "hist_true_and_measured": _ints(hist["both"]),
                "hist_measured": _ints(hist["measured"]), "hist_measured_not_true": _ints(hist["false"]),
                "completeness_bins": _floats(comp), "completeness_low": _floats(comp_lo),
                "completeness_high": _floats(comp_hi), "contamination_bins": _floats(cont),
                "contamination_low": _floats(cont_lo), "contamination_high": _floats(cont_hi)}
        return result


class Skymap(Accumulator):
    """Per-brick summary values at brick centres (from the small summary table, not streamed)."""

    name = "skymap"
    SUMMARY = ("ra", "dec", "frac_recovered", "galdepth_g")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.table = {}

    def set_summary(self, table, summary_columns):
        absent = [name for name in self.SUMMARY if name not in summary_columns]
        if absent:
            self.missing = f"summary column {absent[0]} is not in the file"
            return
        self.table = {name: np.asarray(values, np.float64) for name, values in table.items()
                      if name in self.SUMMARY + ("brick_area",)}

    def numbers(self):
        n = len(self.table.get("ra", ()))
        result = {"n_bricks": n}
        for name in ("frac_recovered", "galdepth_g"):
            values = self.table.get(name, np.zeros(0))
            values = values[np.isfinite(values)]
            result[name] = {"median": float(np.median(values)) if len(values) else None,
                            "min": float(values.min()) if len(values) else None,
                            "max": float(values.max()) if len(values) else None}
        return result


ACCUMULATORS = {cls.name: cls for cls in (Recovery, FluxResiduals, Astrometry, Confusion, Targets, Skymap)}
