"""The selection-function map figure of `obiwan-h5 plot` (``selmap``): the recovered fraction
and the selection function of each selection of ``targets_mask`` per HEALPix pixel over the
footprint, from the same counts as `obiwan-h5 maps` (`core.maps`).

The accumulator and the drawer are here; `registry` lists the figure, `captions` holds its
title and caption, `index` its table.

The rows are counted per NESTED pixel at a fine resolution (`FINE_NSIDE`, made coarser
whenever the footprint holds more than `MAX_PIXELS` pixels, so memory stays bounded); the
figure is drawn at the finest resolution at which the median pixel holds at least
`MIN_INJECTED` injected sources (NESTED counts add up exactly to the coarser pixels). When
the footprint then spans fewer than `MIN_PIXELS` pixels there is no map to show, and the
figure is skipped with that reason.
"""

import numpy as np

from ..core.maps import COUNTS, PixelCounts, fractions
from ..fileformat import SELECTION_LABELS, SELECTIONS
from ..read.maps import MAP_INPUT_COLUMNS, pixel_numbers
from .accumulate import Accumulator
from .draw import colorbar, fmt, grid, new_figure, save, sky_panel, wrap_ra

__all__ = ["FINE_NSIDE", "MAX_PIXELS", "MIN_INJECTED", "MIN_PIXELS", "SPARSE", "SelectionMap", "draw_selmap"]

FINE_NSIDE = 2048  # pixels of 1.7 arcmin: finer than any map worth drawing from injections
MAX_PIXELS = 1 << 18  # pixels counted at once (a few tens of MB); beyond, the counts are made coarser
MIN_INJECTED = 100  # median injected sources per drawn pixel
MIN_PIXELS = 8  # fewer pixels than this make no map
MAX_DRAWN = 100_000  # polygons drawn at most
SPARSE = MIN_INJECTED // 4  # pixels with fewer injected sources (edges of the footprint) are drawn faint
PANELS = (("frac_recovered", "recovered fraction"),) + tuple(
    (f"selfunc_{sel}", f"{SELECTION_LABELS[sel]} selection function") for sel in SELECTIONS)


class SelectionMap(Accumulator):
    """Counts per NESTED pixel of the injected positions; the map at the chosen resolution."""

    name = "selmap"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._require(*MAP_INPUT_COLUMNS)
        self.nside = FINE_NSIDE
        self.totals = PixelCounts(12 * FINE_NSIDE ** 2)
        self.pixels, self.table = np.zeros(0, np.int64), {}

    def columns(self):
        """The columns of `read.maps.MAP_INPUT_COLUMNS`: positions and both masks."""
        return list(MAP_INPUT_COLUMNS)

    def add(self, batch):
        """Count the batch's rows per NESTED pixel, made coarser while the pixels are too many."""
        n = len(batch["ra"])
        self.rows += n
        pixels = pixel_numbers(self.nside, batch["ra"], batch["dec"], nest=True)
        self.totals.add(np.zeros(n, np.int64), pixels, batch["obiwan_mask"], batch["targets_mask"])
        while len(self.totals.keys) + self.totals.pending_keys > MAX_PIXELS and self.nside > 1:
            self._coarser()

    def _coarser(self):
        self.totals.degrade(2)
        self.nside //= 2

    def numbers(self):
        """The map at the drawn resolution: each pixel's fractions and the panels' medians."""
        keys, counts = self.totals.result()
        injected = counts[:, 0]
        while self.nside > 1 and len(injected) and (np.median(injected) < MIN_INJECTED or len(keys) > MAX_DRAWN):
            self._coarser()
            keys, counts = self.totals.result()
            injected = counts[:, 0]
        self.pixels = keys
        self.table = {name: counts[:, i] for i, name in enumerate(COUNTS)}
        self.table.update(fractions(self.table))
        result = {"nside": self.nside, "ordering": "NESTED", "n_pixels": int(len(keys)),
                  "median_injected_per_pixel": float(np.median(injected)) if len(injected) else None,
                  "panels": {}}
        for name, label in PANELS:
            values = self.table[name][np.isfinite(self.table[name])] if len(keys) else np.zeros(0)
            result["panels"][name] = {"label": label, "median": _stat(np.median, values),
                                      "min": _stat(np.min, values), "max": _stat(np.max, values)}
        return result


    def empty(self, numbers):
        """Why there is no map: too few pixels hold enough injected sources."""
        if numbers["n_pixels"] < MIN_PIXELS:
            return (f"the footprint spans {numbers['n_pixels']} HEALPix pixel(s) at nside {numbers['nside']}, the "
                    f"finest at which the median pixel holds >= {MIN_INJECTED} injected sources; a map needs "
                    f">= {MIN_PIXELS}")
        return None


def _stat(function, values):
    return float(function(values)) if len(values) else None


def _polygons(nside, pixels):
    """Pixel corners ``(P, 4, 2)`` in (RA, Dec) degrees, RA kept continuous across RA 0."""
    import hpgeom

    ra, dec = hpgeom.pixel_to_angle(nside, pixels, nest=True, lonlat=True, degrees=True)
    ra = wrap_ra(ra)
    lon, lat = hpgeom.boundaries(nside, pixels, step=1, nest=True, lonlat=True, degrees=True)
    lon = ra[:, None] + ((lon - ra[:, None] + 180.0) % 360.0 - 180.0)
    return np.stack([lon, lat], axis=-1)


def draw_selmap(acc, numbers, path, subtitle):
    """Four panels: recovered fraction and the selection function of each selection."""
    from matplotlib.collections import PolyCollection

    fig = new_figure(13, 10.5, f"Selection function per HEALPix pixel (nside {numbers['nside']}, from injected "
                     "positions)", subtitle)
    axes = grid(fig, 2, 2, left=0.9, right=0.9, top=1.0, bottom=0.7, wspace=1.6, hspace=0.9).ravel()
    corners = _polygons(acc.nside, acc.pixels)
    pad = 0.5 * np.degrees(np.sqrt(4 * np.pi / (12 * acc.nside ** 2)))
    dec_mid = np.radians(np.mean(corners[..., 1]))
    sparse = acc.table["n_inj"] < SPARSE
    for ax, (name, label) in zip(axes, PANELS):
        values = acc.table[name]
        # the colour scale follows the well-sampled pixels: a pixel of 2 sources reads 0 or 1
        finite = values[np.isfinite(values) & ~sparse]
        vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
        if vmin == vmax:
            vmin, vmax = vmin - 0.01, vmax + 0.01
        shown = None
        for chosen, alpha in ((~sparse, 1.0), (sparse, 0.3)):
            if not chosen.any():
                continue
            artist = PolyCollection(corners[chosen], cmap="viridis", edgecolor="face", linewidth=0.2, alpha=alpha)
            artist.set_array(np.ma.masked_invalid(values[chosen]))
            artist.set_clim(vmin, vmax)
            ax.add_collection(artist)
            shown = shown or artist
        sky_panel(ax, (corners[..., 0].min() - pad, corners[..., 0].max() + pad),
                  (corners[..., 1].min() - pad, corners[..., 1].max() + pad), dec_mid,
                  f"{label}: median {fmt(numbers['panels'][name]['median'])}", sizes=(11.5, 10))
        colorbar(fig, shown, ax, name)
    save(fig, path)


def numbers_html(numbers, table):
    """The index page's table under the figure; `table` is the page's table maker."""
    rows = [[panel["label"], _text(panel["median"]), _text(panel["min"]), _text(panel["max"])]
            for panel in numbers["panels"].values()]
    return (f"<p>{numbers['n_pixels']} pixels at nside {numbers['nside']} (NESTED), median "
            f"{_text(numbers['median_injected_per_pixel'], '.0f')} injected sources per pixel</p>"
            + table(["map", "median", "min", "max"], rows))


def _text(value, spec=".3f"):
    return "n/a" if value is None else format(value, spec)
