"""The analysis figures (docs/plot.md): accumulators fed in one streaming pass (`accumulate`,
`stats`), drawing (`draw`), and the figure set with its index page (`figures`)."""


def make_figures(*args, **kwargs):
    """`figures.make_figures` (imported on first use: matplotlib loads only when drawing)."""
    from .figures import make_figures as _make_figures

    return _make_figures(*args, **kwargs)
