"""Accumulators of the imaging-systematics page and of the residuals figure (docs/plot.md).

Same design as `accumulate`: each names the columns it needs (`columns`), is fed row
batches (`add`) and gives the numbers behind its figure (`numbers`); memory is fixed
histograms, capped samples, or one set of counters per brick.

`Systematics` joins the streamed rows to the per-brick imaging conditions of the summary
table (`set_summary`): a source's own Tractor depth exists only when it was recovered, so
the recovered fraction is binned by its brick's depth, seeing and extinction instead. Each
row's brick comes from the brick index (`accumulate.BRICK_INDEX`), so no brickname column
is needed.
"""

import numpy as np

from ..core.photometry import band_quantity, tractor_types
from ..core.selection import flux_to_mag
from ..fileformat import BANDS, TRACTOR_PREFIX, injected_flux_column, is_recovered, is_selected, transmission_column
from .accumulate import BRICK_INDEX, CHI_BINS, SELECTION_AXES, Accumulator
from .sources import TrueMagnitudes, injected_column, tractor_band_column, tractor_shape_column
from .stats import MAG_BINS, Reservoir, json_floats, json_ints, robust_stats, wilson_interval

__all__ = ["DMAG_BINS", "RESIDUALS", "SYSTEMATICS_BINS", "SYSTEMATICS_PROPERTIES", "Residuals", "Systematics",
           "density_ratio_interval", "gaussian_fit", "histogram_quantiles", "quantile_edges"]

# (summary column, axis label); depths are 5-sigma AB magnitudes of the brick's recovered sources
SYSTEMATICS_PROPERTIES = tuple(
    [(f"galdepth_{b}", f"galaxy depth {b} [AB mag]") for b in "grz"]
    + [(f"psfdepth_{b}", f"PSF depth {b} [AB mag]") for b in "grz"]
    + [(f"psfsize_{b}", f"PSF FWHM {b} [arcsec]") for b in "grz"]
    + [("ebv", "E(B-V) [mag]")])
# at most this many bins per property, with (about) equal numbers of bricks
SYSTEMATICS_BINS = 8
# per-brick counters: injected, recovered, then per selection true, measured, true and recovered
_COUNTERS = ["n_inj", "n_rec"] + [f"{key}_{sel}" for sel, _, _ in SELECTION_AXES
                                  for key in ("n_true", "n_meas", "n_true_rec")]


def quantile_edges(values, nbins=SYSTEMATICS_BINS):
    """Bin edges holding about equal numbers of the finite `values` (fewer bins when there
    are fewer distinct values); the last edge is inclusive (see `bin_index`)."""
    values = np.asarray(values, np.float64)
    values = np.unique(values[np.isfinite(values)])
    if not len(values):
        return np.zeros(0)
    if len(values) <= nbins:
        # one bin per distinct value: edges half way between them
        mids = 0.5 * (values[1:] + values[:-1])
        pad = max(np.ptp(values) * 0.05, 1e-3)
        return np.concatenate([[values[0] - pad], mids, [values[-1] + pad]])
    return np.unique(np.quantile(values, np.linspace(0, 1, nbins + 1)))


def bin_index(values, edges):
    """Bin of each value in `edges` (last bin closed), -1 outside or not finite."""
    values = np.asarray(values, np.float64)
    index = np.searchsorted(edges, values, side="right") - 1
    index[values == edges[-1]] = len(edges) - 2
    bad = ~np.isfinite(values) | (index < 0) | (index > len(edges) - 2)
    index[bad] = -1
    return index


def density_ratio_interval(n_meas, n_true, z=1.0):
    """Ratio n_meas / n_true of two counts with its 68 % interval.

    Conditional on their sum, n_meas is binomial with p = ratio / (1 + ratio): the Wilson
    interval of p, mapped back by p / (1 - p). Returns ``(ratio, low, high)``, NaN when
    n_true is 0.
    """
    n_meas, n_true = np.asarray(n_meas, np.float64), np.asarray(n_true, np.float64)
    _, low, high = wilson_interval(n_meas, n_meas + n_true, z)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(n_true > 0, n_meas / n_true, np.nan)
        low = np.where(n_true > 0, low / (1 - low), np.nan)
        high = np.where(n_true > 0, np.where(high < 1, high / (1 - high), np.inf), np.nan)
    return ratio, low, high


class Systematics(Accumulator):
    """Recovered fraction and measured/true selected-target density ratio in bins of each
    brick's imaging conditions (summary galdepth, psfdepth, psfsize per band, ebv)."""

    name = "systematics"
    SUMMARY = tuple(name for name, _ in SYSTEMATICS_PROPERTIES)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask")
        self.has_targets = "targets_mask" in self.available
        self.counts = np.zeros((0, len(_COUNTERS)), np.int64)  # per brick of the file, by BRICK_INDEX
        self.properties = {}  # summary column -> per-brick values, aligned with self.bricks
        self.bricks = np.zeros(0, np.int64)  # BRICK_INDEX of the summary rows

    def columns(self):
        """``obiwan_mask`` and, when there, ``targets_mask`` (the brick index is added to every batch)."""
        return ["obiwan_mask"] + (["targets_mask"] if self.has_targets else [])

    def add(self, batch):
        """Add the batch's rows to their brick's counters: injected, recovered, and per
        selection true, measured, true and recovered."""
        brick = np.asarray(batch[BRICK_INDEX], np.int64)
        if len(brick) and brick.max() >= len(self.counts):
            # grow by doubling: one copy per doubling, not one per batch
            grown = np.zeros((max(brick.max() + 1, 2 * len(self.counts)), len(_COUNTERS)), np.int64)
            grown[:len(self.counts)] = self.counts
            self.counts = grown
        recovered = is_recovered(batch["obiwan_mask"])
        self.rows += len(recovered)
        flags = [np.ones(len(recovered), bool), recovered]
        for sel, _, _ in SELECTION_AXES:
            if self.has_targets:
                true = is_selected(batch["targets_mask"], sel, true=True)
                measured = is_selected(batch["targets_mask"], sel)
            else:
                true = measured = np.zeros(len(recovered), bool)
            flags += [true, measured, true & recovered]
        for column, flag in enumerate(flags):
            self.counts[:, column] += np.bincount(brick[flag], minlength=len(self.counts))

    def set_summary(self, table, summary_columns):
        """Per-brick imaging conditions: the summary rows of the chosen bricks (with their
        `BRICK_INDEX`)."""
        present = [name for name, _ in SYSTEMATICS_PROPERTIES if name in summary_columns and name in table]
        if not present:
            if self.missing is None:
                self.missing = "the summary has no depth, psfsize or ebv column"
            return
        self.bricks = np.asarray(table[BRICK_INDEX], np.int64)
        self.properties = {name: np.asarray(table[name], np.float64) for name in present}

    def _brick_counts(self):
        """Counters of the summary's bricks, in summary order (zeros for bricks without rows)."""
        out = np.zeros((len(self.bricks), len(_COUNTERS)), np.int64)
        known = self.bricks < len(self.counts)
        out[known] = self.counts[self.bricks[known]]
        return out

    def numbers(self):
        """Per imaging property: its bins of bricks, the recovered fraction and each
        selection's density ratio per bin."""
        counts = self._brick_counts()
        result = {"n_rows": self.rows, "n_bricks": len(self.bricks), "has_targets": self.has_targets,
                  "interval": "68% Wilson (recovered fraction); density ratio: Wilson interval of "
                              "n_meas / (n_meas + n_true) mapped by p / (1 - p)",
                  "binning": f"up to {SYSTEMATICS_BINS} bins of about equal numbers of bricks per property",
                  "properties": {}}
        total = counts.sum(axis=0)
        result["fraction_recovered"] = float(total[1] / total[0]) if total[0] else None
        result["density_ratio"] = {}
        for sel, _, _ in SELECTION_AXES:
            n_true, n_meas = total[_COUNTERS.index(f"n_true_{sel}")], total[_COUNTERS.index(f"n_meas_{sel}")]
            result["density_ratio"][sel] = float(n_meas / n_true) if n_true else None
        for name, label in SYSTEMATICS_PROPERTIES:
            if name not in self.properties:
                continue
            values = self.properties[name]
            edges = quantile_edges(values)
            if len(edges) < 2:
                result["properties"][name] = {"label": label, "edges": [], "n_bricks": []}
                continue
            which = bin_index(values, edges)
            nbins = len(edges) - 1
            binned = np.zeros((nbins, len(_COUNTERS)), np.int64)
            np.add.at(binned, which[which >= 0], counts[which >= 0])
            centre = [float(np.median(values[which == k])) if np.any(which == k) else None for k in range(nbins)]
            fraction, low, high = wilson_interval(binned[:, 1], binned[:, 0])
            entry = {"label": label, "edges": json_floats(edges), "centre": centre,
                     "n_bricks": json_ints(np.bincount(which[which >= 0], minlength=nbins)),
                     "n_inj": json_ints(binned[:, 0]), "n_rec": json_ints(binned[:, 1]),
                     "fraction": json_floats(fraction), "low": json_floats(low), "high": json_floats(high),
                     "selections": {}}
            for sel, _, _ in SELECTION_AXES:
                n_true = binned[:, _COUNTERS.index(f"n_true_{sel}")]
                n_meas = binned[:, _COUNTERS.index(f"n_meas_{sel}")]
                n_true_rec = binned[:, _COUNTERS.index(f"n_true_rec_{sel}")]
                ratio, rlow, rhigh = density_ratio_interval(n_meas, n_true)
                frac_sel, flow, fhigh = wilson_interval(n_true_rec, n_true)
                entry["selections"][sel] = {
                    "n_true": json_ints(n_true), "n_meas": json_ints(n_meas), "n_true_rec": json_ints(n_true_rec),
                    "ratio": json_floats(ratio), "ratio_low": json_floats(rlow), "ratio_high": json_floats(rhigh),
                    "fraction_recovered": json_floats(frac_sel), "fraction_low": json_floats(flow),
                    "fraction_high": json_floats(fhigh)}
            result["properties"][name] = entry
        return result

    def empty(self, numbers):
        """Why there is no figure: no brick with both rows and finite imaging conditions."""
        if not any(sum(prop.get("n_inj", [])) for prop in numbers["properties"].values()):
            return "no brick with both rows and finite imaging conditions"
        return None


# ------------------------------------------------------------------- residuals in sigma

# residual name -> (label); flux residuals are extincted Tractor flux minus simcat flux as added
# and shapes (rhalf, e1, e2) of EXP, REX and SIMP fits (shapeexp) and, apart, of DEV fits (shapedev)
SHAPES = ("rhalf", "e1", "e2")
RESIDUALS = {**{f"flux_{b}": f"(Tractor − true) {b} flux / σ" for b in BANDS},
             "rhalf": "(Tractor − true) half-light radius / σ",
             "e1": "(Tractor − true) e1 / σ", "e2": "(Tractor − true) e2 / σ",
             **{f"{key}_dev": f"DEV fits: (Tractor − true) {key} / σ" for key in SHAPES}}
# bins of the magnitude residual (true − Tractor, both extincted)
DMAG_BINS = np.round(np.linspace(-1.0, 1.0, 41), 6)
# Tractor profile whose shape is compared with the injected one, by fitted type: the
# exponential family is one residual, DEV fits another (a de Vaucouleurs radius of a source
# injected with another profile is not its half-light radius: a profile mismatch, off zero)
_SHAPE_MODEL = {b"EXP": ("shapeexp", ""), b"REX": ("shapeexp", ""), b"SIMP": ("shapeexp", ""),
                b"DEV": ("shapedev", "_dev")}


def gaussian_fit(hist, bins):
    """Least-squares fit of a normal density to a histogram: ``(mean, sigma)`` or Nones.

    The histogram is normalised over its own range (as the old thesis script did), so
    the fit describes the core of the distribution within the bins.
    """
    from scipy.optimize import curve_fit

    hist = np.asarray(hist, np.float64)
    total = hist.sum()
    if total < 3:
        return None, None
    width = np.diff(bins)
    centres = 0.5 * (bins[1:] + bins[:-1])
    density = hist / (total * width)
    mean0 = float(np.sum(centres * hist) / total)
    sigma0 = float(np.sqrt(max(np.sum((centres - mean0) ** 2 * hist) / total, width[0] ** 2)))

    def model(x, mean, sigma):
        return np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (np.sqrt(2 * np.pi) * abs(sigma))

    try:
        (mean, sigma), _ = curve_fit(model, centres, density, p0=[mean0, sigma0], maxfev=2000)
    except (RuntimeError, ValueError):
        return None, None
    return float(mean), float(abs(sigma))


def histogram_quantiles(hist2d, bins, levels=(0.25, 0.5, 0.75), min_count=5):
    """Quantiles along axis 1 of a 2-D histogram (one row per x bin), interpolated within
    the bins of the cumulative counts; NaN for rows with fewer than `min_count`."""
    hist2d = np.asarray(hist2d, np.float64)
    out = np.full((len(levels), len(hist2d)), np.nan)
    for row, counts in enumerate(hist2d):
        total = counts.sum()
        if total < min_count:
            continue
        cumulative = np.concatenate([[0.0], np.cumsum(counts)]) / total
        for k, level in enumerate(levels):
            out[k, row] = np.interp(level, cumulative, bins)
    return out


class Residuals(Accumulator):
    """Residuals of recovered sources in units of their Tractor σ: flux per band, half-light
    radius and ellipticity (exponential-family fits, and DEV fits apart); histograms with a
    Gaussian fit and, for the fluxes, 2-D histograms against true magnitude."""

    name = "residuals"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require("obiwan_mask")
        self.flux_bands = [b for b in BANDS
                           if tractor_band_column(self.available, "flux", b)
                           and tractor_band_column(self.available, "flux_ivar", b)
                           and {injected_flux_column(b), transmission_column(b)} <= self.available]
        self.mags = TrueMagnitudes(self.available, self.flux_bands)
        self.truth = {key: name for key in SHAPES if (name := injected_column(self.available, key))}
        self.shapes = [key for key in self.truth if "tractor_type" in self.available and all(
            tractor_shape_column(model, key, suffix) in self.available
            for model in ("shapeexp", "shapedev") for suffix in ("", "_ivar"))]
        self.names = ([f"flux_{b}" for b in self.flux_bands] + self.shapes
                      + [f"{key}_dev" for key in self.shapes])
        if not self.names and self.missing is None:
            self.missing = "no Tractor flux/flux_ivar with simcat fluxes, and no Tractor shapes with injected ones"
        self.hist = {name: np.zeros(len(CHI_BINS) - 1, np.int64) for name in self.names}
        self.outside = dict.fromkeys(self.names, 0)
        self.sample = {name: Reservoir(self.capacity, self.rng, ("chi",)) for name in self.names}
        self.vs_mag = {b: np.zeros((len(MAG_BINS) - 1, len(CHI_BINS) - 1), np.int64) for b in self.flux_bands}
        self.dmag = {b: np.zeros((len(MAG_BINS) - 1, len(DMAG_BINS) - 1), np.int64) for b in self.flux_bands}

    def columns(self):
        """``obiwan_mask``, the simcat and Tractor fluxes of each band, and the injected and Tractor shapes."""
        names = ["obiwan_mask"]
        for b in self.flux_bands:
            names += [injected_flux_column(b), transmission_column(b), tractor_band_column(self.available, "flux", b),
                      tractor_band_column(self.available, "flux_ivar", b)]
        if self.shapes:
            names.append("tractor_type")
        for key in self.shapes:
            names.append(self.truth[key])
            names += [tractor_shape_column(model, key, suffix) for model in ("shapeexp", "shapedev")
                      for suffix in ("", "_ivar")]
        return list(dict.fromkeys(names))

    def _count(self, name, chi):
        inside = (chi >= CHI_BINS[0]) & (chi <= CHI_BINS[-1])
        self.outside[name] += int((~inside).sum())
        self.hist[name] += np.histogram(chi[inside], CHI_BINS)[0]
        self.sample[name].add(chi=chi)

    def add(self, batch):
        """Histogram and sample the σ-normalised flux and shape residuals of the batch's recovered sources."""
        recovered = is_recovered(batch["obiwan_mask"])
        self.rows += int(recovered.sum())
        for b in self.flux_bands:
            true = np.asarray(batch[injected_flux_column(b)], np.float64)
            measured = np.asarray(band_quantity(batch, "flux", b, TRACTOR_PREFIX), np.float64)
            ivar = np.asarray(band_quantity(batch, "flux_ivar", b, TRACTOR_PREFIX), np.float64)
            with np.errstate(invalid="ignore"):
                ok = recovered & np.isfinite(measured - true) & (ivar > 0)
            chi = (measured[ok] - true[ok]) * np.sqrt(ivar[ok])
            self._count(f"flux_{b}", chi)
            mag = self.mags(batch, b)[ok]
            self.vs_mag[b] += np.histogram2d(mag, np.clip(chi, CHI_BINS[0], CHI_BINS[-1]),
                                             [MAG_BINS, CHI_BINS])[0].astype(np.int64)
            # true minus Tractor magnitude, both extincted (negative: Tractor too faint); needs a positive flux
            dmag = flux_to_mag(true[ok]) - flux_to_mag(measured[ok])
            self.dmag[b] += np.histogram2d(mag, np.clip(dmag, DMAG_BINS[0], DMAG_BINS[-1]),
                                           [MAG_BINS, DMAG_BINS])[0].astype(np.int64)
        if not self.shapes:
            return
        kinds = tractor_types(batch["tractor_type"])
        for key in self.shapes:
            truth = np.asarray(batch[self.truth[key]], np.float64)
            for code, (model, suffix) in _SHAPE_MODEL.items():
                chosen = recovered & (kinds == code)
                if not chosen.any():
                    continue
                value = np.asarray(batch[tractor_shape_column(model, key)], np.float64)[chosen]
                ivar = np.asarray(batch[tractor_shape_column(model, key, "_ivar")], np.float64)[chosen]
                with np.errstate(invalid="ignore"):
                    ok = np.isfinite(value - truth[chosen]) & (ivar > 0)
                self._count(key + suffix, (value[ok] - truth[chosen][ok]) * np.sqrt(ivar[ok]))

    def numbers(self):
        """Per quantity: the histogram of residuals over σ, its robust statistics and Gaussian
        fit; per band the 2-D histograms against true magnitude."""
        result = {"chi_bins": json_floats(CHI_BINS), "mag_bins": json_floats(MAG_BINS), "dmag_bins": json_floats(DMAG_BINS),
                  "n_recovered": self.rows, "magnitude_source": self.mags.describe(),
                  "convention": "flux: Tractor flux minus simcat flux as added (both extincted) times "
                                "sqrt(flux_ivar); rhalf, e1, e2: Tractor shapeexp of EXP, REX and SIMP fits "
                                "(<key>) or shapedev of DEV fits (<key>_dev) minus the injected value, times "
                                "sqrt(ivar); PSF and COMP not used",
                  "fit": "least-squares normal density on the histogram normalised within [-6, 6]",
                  "quantities": {}}
        for name in self.names:
            mean, sigma = gaussian_fit(self.hist[name], CHI_BINS)
            median, robust_sigma = robust_stats(self.sample[name].data["chi"])
            entry = {"label": RESIDUALS[name], "n": int(self.hist[name].sum()) + self.outside[name],
                     "hist": json_ints(self.hist[name]), "n_outside_bins": self.outside[name],
                     "fit_mean": mean, "fit_sigma": sigma, "robust_median": json_floats([median])[0],
                     "robust_sigma": json_floats([robust_sigma])[0], "sample_complete": self.sample[name].complete}
            band = name[len("flux_"):] if name.startswith("flux_") else None
            if band:
                quartiles = histogram_quantiles(self.vs_mag[band], CHI_BINS)
                entry.update(vs_mag=[json_ints(row) for row in self.vs_mag[band]], q25=json_floats(quartiles[0]),
                             median=json_floats(quartiles[1]), q75=json_floats(quartiles[2]))
                dq = histogram_quantiles(self.dmag[band], DMAG_BINS)
                entry.update(dmag_vs_mag=[json_ints(row) for row in self.dmag[band]], dmag_q25=json_floats(dq[0]),
                             dmag_median=json_floats(dq[1]), dmag_q75=json_floats(dq[2]))
            result["quantities"][name] = entry
        return result

    def empty(self, numbers):
        """Why there is nothing to draw: no recovered source with a measured flux or shape and ivar > 0."""
        if not any(entry["n"] for entry in numbers["quantities"].values()):
            return "no recovered source with a measured flux or shape and ivar > 0"
        return None

