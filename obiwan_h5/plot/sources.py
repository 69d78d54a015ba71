"""Which derived columns serve each quantity the figures need (`obiwan_h5.plot`).

A figure uses every column that can serve: a `view` or `subset` may hold the truth table's
magnitudes ``psql_g/r/z`` without the simcat fluxes, or Tractor fluxes without their
``mw_transmission``. Each accumulator asks here, once, which columns it reads, and says in
its numbers (and so in its caption) which source it used.
"""

import numpy as np

from ..core.photometry import band_column, deextincted_flux, true_flux
from ..core.selection import flux_to_mag
from ..fileformat import BANDS, TRACTOR_PREFIX, injected_flux_column, tractor_column, transmission_column, truth_column

__all__ = ["MeasuredMagnitudes", "TrueMagnitudes", "injected_column", "tractor_band_column", "tractor_shape_column"]


def tractor_band_column(available, quantity, band):
    """The derived column holding a Tractor quantity of one band (DR5 scalar or DR3 array;
    `core.photometry.band_column` of the ``tractor_`` columns)."""
    return band_column(available, quantity, band, TRACTOR_PREFIX)


def tractor_shape_column(model, key, suffix=""):
    """The derived column of a Tractor shape parameter: `model` ``"shapeexp"`` or
    ``"shapedev"``, `key` the injected name (``rhalf``, ``e1``, ``e2``; Tractor calls the
    radius ``r``), `suffix` ``""`` or ``"_ivar"``."""
    return tractor_column(f"{model}_{'r' if key == 'rhalf' else key}{suffix}")


def injected_column(available, key):
    """The column of the injected value of `key`: the simcat column, else the truth table's
    ``psql_<key>``; None when neither is there."""
    for name in (key, truth_column(key)):
        if name in available:
            return name
    return None


class TrueMagnitudes:
    """True de-extincted AB magnitudes per band, from the best columns a file has.

    The simcat flux as added to the images divided by its ``mw_transmission`` when both are
    there, else the truth table's magnitude ``psql_<band>`` (the magnitude the simcat flux
    was made from); a band with neither is left out.
    """

    SIMCAT = "simcat flux / mw_transmission"
    TRUTH = "truth table psql_{band}"

    def __init__(self, available, bands=BANDS):
        self.columns_of = {}
        for band in bands:
            simcat = [injected_flux_column(band), transmission_column(band)]
            if set(simcat) <= set(available):
                self.columns_of[band] = simcat
            elif truth_column(band) in available:
                self.columns_of[band] = [truth_column(band)]
        self.bands = list(self.columns_of)

    def columns(self, bands=None):
        """The columns read for `bands` (default every band it has)."""
        names = []
        for band in self.bands if bands is None else bands:
            names += self.columns_of[band]
        return names

    def source(self, band):
        """What the magnitude of `band` is made from."""
        return self.SIMCAT if len(self.columns_of[band]) == 2 else self.TRUTH.format(band=band)

    def describe(self, bands=None):
        """One phrase for a caption: the source of every band used."""
        bands = self.bands if bands is None else list(bands)
        if not bands:
            return "no true magnitudes"
        kinds = {len(self.columns_of[band]) for band in bands}
        if kinds == {2}:
            return f"{self.SIMCAT} ({', '.join(injected_flux_column(band) for band in bands)})"
        if kinds == {1}:
            return f"truth table magnitudes {', '.join(truth_column(band) for band in bands)} (no simcat fluxes)"
        return "; ".join(f"{band}: {self.source(band)}" for band in bands)

    def __call__(self, batch, band):
        """The magnitudes of one band in `batch` (float64, NaN where not finite)."""
        if len(self.columns_of[band]) == 2:
            return flux_to_mag(true_flux(batch, band))
        mag = np.asarray(batch[truth_column(band)], np.float64)
        return np.where(np.isfinite(mag), mag, np.nan)


class MeasuredMagnitudes:
    """Tractor-measured de-extincted AB magnitudes per band (flux / mw_transmission, DR5 or
    DR3 schema); a band whose flux or transmission column is absent is left out."""

    def __init__(self, available, bands=BANDS):
        self.columns_of = {}
        for band in bands:
            names = [tractor_band_column(available, quantity, band) for quantity in ("flux", "mw_transmission")]
            if all(names):
                self.columns_of[band] = names
        self.bands = list(self.columns_of)

    def columns(self):
        """The columns read, each once (a DR3 array serves every band)."""
        return list(dict.fromkeys(name for names in self.columns_of.values() for name in names))

    def __call__(self, batch, band):
        """The magnitudes of one band in `batch` (float64; NaN where the flux is not positive)."""
        return flux_to_mag(deextincted_flux(batch, band, TRACTOR_PREFIX))
