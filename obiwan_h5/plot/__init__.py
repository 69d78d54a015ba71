"""The analysis figures of `obiwan-h5 plot` (docs/plot.md): accumulators fed in one
streaming pass (`accumulate`, `thesis`, `families`, with `sources` choosing the columns and
`stats`), drawers (`draw`, `draw_thesis`, `draw_families`), the list of figures
(`registry`), their captions (`captions`), the runner (`figures`) and the page (`index`)."""


def make_figures(*args, **kwargs):
    """`figures.make_figures` (imported on first use: matplotlib loads only when drawing)."""
    from .figures import make_figures as _make_figures

    return _make_figures(*args, **kwargs)
