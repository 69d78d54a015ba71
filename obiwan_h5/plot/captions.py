"""Titles and captions of the analysis figures (`obiwan_h5.plot`), one of each per figure.

A caption says what the figure shows and from which columns: ``{magnitudes}`` is filled
with the source of the true magnitudes the figure used (simcat fluxes, or the truth
table's ``psql_*`` in a view without them), ``{radius}`` with the match radius.
"""

from .selmap import MIN_INJECTED, MIN_PIXELS, SPARSE
from .stats import MIN_BIN_COUNT

__all__ = ["CAPTIONS", "TITLES", "caption"]

TITLES = {
    "inputs": "Input distributions and recovery vs injected properties",
    "recovery": "Recovered fraction vs true magnitude",
    "flux_residuals": "Flux residuals",
    "residuals": "Residuals in units of σ, and vs magnitude",
    "astrometry": "Astrometric residuals",
    "confusion": "Injected morphology vs Tractor type",
    "morphology": "Per-type counts and shape recovery",
    "targets": "Target selection: completeness and contamination",
    "colours": "Colour space: recovered, lost, contaminating",
    "systematics": "Imaging systematics: recovery and target density vs depth, seeing, extinction",
    "skymap": "Sky maps per brick",
    "selmap": "Selection function over the footprint (HEALPix)",
}

CAPTIONS = {
    "recovery": "Fraction of injected sources recovered (a Tractor source within the {radius:g}″ match radius, "
                "obiwan_mask bit 0) in 0.2-mag bins of true de-extincted magnitude (from {magnitudes}), with 68% "
                "Wilson binomial intervals; ◆ marks the 50% point, linearly interpolated between the faintest bin "
                f"(≥{MIN_BIN_COUNT} sources) still at ≥ 50% and the next.",
    "flux_residuals": "Recovered sources: Tractor flux minus the flux added to the images (simcat gflux/rflux/zflux) — "
                      "both extincted, neither divided by mw_transmission — in nanomaggies (top), and divided by "
                      "σ = 1/√flux_ivar (bottom, unit Gaussian dashed); median and robust σ = 1.4826·MAD annotated.",
    "astrometry": "Recovered sources: Tractor minus injected position, Δra·cos(dec) and Δdec in arcsec, as a 2-D "
                  "histogram (log colour scale) with marginal histograms; median and robust σ = 1.4826·MAD.",
    "confusion": "Injected morphology from the Sérsic index n and half-light radius rhalf (simcat, else psql_n, "
                 "psql_rhalf; PSF-like: rhalf < 0.05″ or n < 0.5; EXP-like: 0.5 ≤ n < 2.5, i.e. n≈1; DEV-like: "
                 "n ≥ 2.5, i.e. n≈4) vs the type Tractor fit to the matched source; rows normalised, cells show "
                 "fraction (count); last column: not recovered. Classes and types with no source are left out.",
    "targets": "Completeness = true∧measured / true and contamination = measured∧¬true / measured (targets_mask "
               "bits 3–5 vs 0–2), in 0.2-mag bins of true de-extincted r (DESI ELG) or g (eBOSS ELG) from "
               "{magnitudes}, with 68% Wilson intervals. Shaded: magnitudes beyond the selection's own limits "
               "(DESI r < 23.4; eBOSS 21.825 < g < 22.9 NGC, 22.825 SGC), where nothing is true-selected and "
               "every measured-selected source is a contaminant by definition: no contamination drawn there, "
               "their number is given. Legend: totals; grey: numbers of true- and measured-selected sources.",
    "inputs": "Injected sources. Top: true de-extincted magnitudes (from {magnitudes}) of all and of recovered "
              "sources, the magnitudes as added to the images (with extinction; simcat fluxes) and the measured "
              "de-extincted Tractor magnitudes (with noise) of recovered sources, and true colours; middle: "
              "injected rhalf, n, e1, e2 (simcat, else the truth table's psql_ columns), all and recovered; "
              "bottom: recovered fraction vs rhalf, redshift, n and e1 with 68% Wilson intervals (bins with "
              "≥ 5 sources). A property with a few distinct values (n = 0, 1, 4) is counted per value and "
              "drawn as bars and points. Panels whose columns the file lacks are left out.",
    "morphology": "Injected morphology class (as in the confusion matrix) of all and of recovered sources, the "
                  "Tractor types of recovered sources, the injected rhalf distribution per fitted type, and "
                  "measured vs injected rhalf, e1, e2 of recovered galaxy fits (shapedev for DEV, shapeexp "
                  "otherwise) as 2-D histograms with the mean measured value per injected bin; only fits that "
                  "measure the parameter: rhalf leaves out PSF, SIMP and COMP, e1/e2 also the round REX. "
                  "Classes and types with no source are left out.",
    "colours": "g−r vs r−z of true de-extincted colours (from {magnitudes}) in 0.05-mag cells (log colour "
               "scale): recovered and lost sources and the recovered fraction; the mix of Tractor types among "
               "recovered sources along g−r and along r−z (stacked fractions, bins with ≥ 10 recovered); for "
               "each selection the contaminating sources (measured-selected but not true-selected) at their "
               "measured colours, with a contour around the colours of the true-selected targets. Colours "
               "outside −0.5…2.0 (g−r) and −0.5…2.5 (r−z) not shown; panels without their columns left out.",
    "residuals": "Recovered sources: residuals in units of the Tractor σ — flux per band (Tractor minus injected, "
                 "both extincted, × √flux_ivar), and half-light radius and e1/e2 (Tractor shapeexp of EXP, REX "
                 "and SIMP fits minus the injected value, × √ivar) — as densities within ±6 with the unit normal "
                 "(dashed) and a least-squares Gaussian fit (solid). DEV fits (shapedev) are drawn apart in grey "
                 "and left out of the fit: a de Vaucouleurs radius of a source injected with another profile is "
                 "not its half-light radius (a profile mismatch), so they sit off zero. Below: flux residual/σ vs "
                 "true magnitude (log grey scale) with its median and quartiles per 0.2-mag bin; last row: true "
                 "minus Tractor magnitude (both extincted) vs true magnitude, likewise.",
    "systematics": "Each brick's imaging conditions from the summary (5σ galaxy and PSF depth and PSF FWHM of its "
                   "recovered sources, per band in the band's colour, and E(B−V) in black), in up to 8 bins of "
                   "about equal numbers of bricks, points at the median brick value; top row: recovered fraction "
                   "of all injected sources; below, one row per selection: the ratio of measured- to "
                   "true-selected targets (dotted: over all bricks; dashed: 1). 68% Wilson intervals (ratio: "
                   "Wilson on n_meas/(n_meas+n_true)). The recovered fraction of the true-selected targets per "
                   "bin is in numbers.json.",
    "skymap": "Per-brick frac_recovered and galdepth_g (5σ AB galaxy depth from the median galdepth inverse "
              "variance of the brick's recovered sources) from the summary table, drawn as brick-sized squares "
              "at the brick centres (RA increasing to the left).",
    "selmap": "Recovered fraction (obiwan_mask bit 0) and, for each selection, the selection function (measured-"
              "selected / injected: targets_mask bits 0–2) per HEALPix pixel of the injected positions, at the "
              f"finest nside at which the median pixel holds ≥ {MIN_INJECTED} injected sources (RA increasing to "
              f"the left; pixels of fewer than {SPARSE} sources, at the edges, drawn faint and left out of the "
              f"colour scale); skipped when the footprint spans fewer than {MIN_PIXELS} such pixels. "
              "`obiwan-h5 maps` writes these maps, with their errors, at any nside (docs/maps.md).",
}


def caption(name, numbers, radius):
    """The caption of figure `name`, filled from its numbers and the match radius."""
    return CAPTIONS[name].format(radius=radius,
                                 magnitudes=numbers.get("magnitude_source") or "simcat flux / mw_transmission")
