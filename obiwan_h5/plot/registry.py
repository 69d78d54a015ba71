"""The figures of `obiwan-h5 plot`, in page order: one line per figure.

Each line names a figure, its accumulator (what is counted while the rows stream past)
and its drawer (the PNG). To add a figure: the accumulator (`accumulate`, `thesis` or
`families`), the drawer (`draw`, `draw_thesis` or `draw_families`), one line here, its
title and caption in `captions` and, if it has numbers worth a table, one in `index`.
"""

from .accumulate import Astrometry, Confusion, FluxResiduals, Recovery, Skymap, Targets
from .draw import draw_astrometry, draw_confusion, draw_flux_residuals, draw_recovery, draw_skymap, draw_targets
from .draw_families import draw_colours, draw_inputs, draw_morphology
from .draw_thesis import draw_residuals, draw_systematics
from .families import Colours, Inputs, Morphology
from .selmap import SelectionMap, draw_selmap
from .thesis import Residuals, Systematics

__all__ = ["ACCUMULATORS", "DRAWERS", "FIGURES", "SECTIONS"]

# (section title, ((figure, accumulator, drawer), ...)), in page order
SECTIONS = (
    ("Injected sources", (
        ("inputs", Inputs, draw_inputs),
    )),
    ("Recovery, photometry and astrometry", (
        ("recovery", Recovery, draw_recovery),
        ("flux_residuals", FluxResiduals, draw_flux_residuals),
        ("residuals", Residuals, draw_residuals),
        ("astrometry", Astrometry, draw_astrometry),
    )),
    ("Morphology", (
        ("confusion", Confusion, draw_confusion),
        ("morphology", Morphology, draw_morphology),
    )),
    ("Target selection and colour space", (
        ("targets", Targets, draw_targets),
        ("colours", Colours, draw_colours),
    )),
    ("Imaging systematics", (
        ("systematics", Systematics, draw_systematics),
    )),
    ("Per brick", (
        ("skymap", Skymap, draw_skymap),
    )),
    ("Selection-function maps", (
        ("selmap", SelectionMap, draw_selmap),
    )),
)

FIGURES = tuple(name for _, figures in SECTIONS for name, _, _ in figures)
ACCUMULATORS = {name: accumulator for _, figures in SECTIONS for name, accumulator, _ in figures}
DRAWERS = {name: drawer for _, figures in SECTIONS for name, _, drawer in figures}
