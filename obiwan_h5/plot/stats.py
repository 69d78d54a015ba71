"""Statistics behind the analysis figures (`obiwan_h5.plot`): no plotting.

Everything here works batch by batch with bounded memory: counts go into fixed histograms,
and the quantities whose range is not known in advance (flux and position residuals) go
into a capped uniform random sample (`Reservoir`), which holds *every* value while there
are fewer than its capacity. The Wilson interval and the robust sigma are astropy's
(`astropy.stats`); the functions here only fix what the figures need around them (empty
bins, exact ends, non-finite values).
"""

import numpy as np
from astropy.stats import binom_conf_interval, mad_std
from scipy.special import erf

__all__ = [
    "MAG_BINS",
    "MIN_BIN_COUNT",
    "Reservoir",
    "coalesce",
    "crossing",
    "json_floats",
    "json_ints",
    "robust_stats",
    "wilson_interval",
]

# true-magnitude bins of the recovery and target-selection curves (0.2 mag over [16, 28])
MAG_BINS = np.round(np.arange(16.0, 28.0 + 1e-9, 0.2), 6)
# bins with fewer sources than this are drawn but not used to place the 50% crossing
MIN_BIN_COUNT = 10


def wilson_interval(k, n, z=1.0):
    """Wilson score interval of a binomial proportion k/n, z standard deviations wide
    (z=1: 68.27 %), by ``astropy.stats.binom_conf_interval(interval="wilson")``.

    Parameters
    ----------
    k, n : array_like
        Successes and trials (integer counts, k <= n), broadcast together.
    z : float
        Half-width of the interval in standard deviations of a normal distribution.

    Returns
    -------
    fraction, low, high : numpy.ndarray
        k/n and the interval; NaN where n == 0 (astropy refuses empty bins, which the
        figures have: they are left out here).
    """
    # astropy truncates counts to integers: round first, so that a count summed in floats
    # (19.999999...) is not taken as one less
    k, n = np.broadcast_arrays(np.rint(np.asarray(k, dtype=np.float64)), np.rint(np.asarray(n, dtype=np.float64)))
    fraction, low, high = (np.full(k.shape, np.nan) for _ in range(3))
    filled = n > 0
    if filled.any():
        # astropy takes the interval's probability content: z sigma of a normal
        low[filled], high[filled] = binom_conf_interval(
            k[filled], n[filled], confidence_level=float(erf(z / np.sqrt(2.0))), interval="wilson")
        fraction[filled] = k[filled] / n[filled]
    # exact limits at the ends (the formula misses 0 and 1 by rounding)
    low[filled & (k <= 0)] = 0.0
    high[filled & (k >= n)] = 1.0
    return fraction, low, high


def crossing(centres, fraction, counts, level=0.5, min_count=MIN_BIN_COUNT):
    """Magnitude where a recovered-fraction curve falls through `level`, or None.

    Uses bins with at least `min_count` sources (all non-empty bins if none has that many):
    the faintest such bin with fraction ≥ level and the next such bin, linearly
    interpolated. None when the curve never reaches the level or never falls below it.
    """
    centres, fraction, counts = (np.asarray(a, dtype=np.float64) for a in (centres, fraction, counts))
    use = (counts >= min_count) & np.isfinite(fraction)
    if not use.any():
        use = (counts > 0) & np.isfinite(fraction)
    x, y = centres[use], fraction[use]
    above = np.flatnonzero(y >= level)
    if not len(above) or above[-1] == len(y) - 1:
        return None
    i = above[-1]
    x0, x1, y0, y1 = x[i], x[i + 1], y[i], y[i + 1]
    return float(x0 + (y0 - level) / (y0 - y1) * (x1 - x0)) if y0 != y1 else float(x0)


def robust_stats(values):
    """``(median, robust sigma)`` of the finite values; NaNs when there are none.

    The robust sigma is ``astropy.stats.mad_std``: the median absolute deviation scaled to
    the standard deviation of a normal distribution (× 1/Φ⁻¹(3/4) ≈ 1.4826).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return np.nan, np.nan
    return float(np.median(values)), float(mad_std(values))


class Reservoir:
    """A uniform random sample of at most `capacity` rows, fed batch by batch.

    Each row gets a uniform random key and the rows with the smallest keys are kept
    (bottom-k sampling), so the sample is uniform without replacement, deterministic for a
    seeded generator and exact (every row) while fewer than `capacity` rows were seen.
    """

    def __init__(self, capacity, rng, fields):
        self.capacity = int(capacity)
        self.rng = rng
        self.seen = 0
        self._keys = np.zeros(0)
        self.data = {name: np.zeros(0) for name in fields}

    def add(self, **arrays):
        """Offer the rows of `arrays` (one array per field, equal lengths) to the sample."""
        n = len(next(iter(arrays.values())))
        keys = self.rng.random(n)
        self.seen += n
        if n == 0 or self.capacity <= 0:
            return
        if len(self._keys) >= self.capacity:
            keep = keys < self._keys.max()
            if not keep.any():
                return
            keys = keys[keep]
            arrays = {name: values[keep] for name, values in arrays.items()}
        keys = np.concatenate([self._keys, keys])
        data = {name: np.concatenate([self.data[name], np.asarray(arrays[name], np.float64)])
                for name in self.data}
        if len(keys) > self.capacity:
            chosen = np.argpartition(keys, self.capacity - 1)[:self.capacity]
            keys = keys[chosen]
            data = {name: values[chosen] for name, values in data.items()}
        self._keys, self.data = keys, data

    @property
    def size(self):
        """Rows held in the sample."""
        return len(self._keys)

    @property
    def complete(self):
        """True when the sample holds every row seen."""
        return self.size == self.seen


def coalesce(batches, rows):
    """Join consecutive small batches (dicts of arrays) into batches of about `rows` rows.

    The reader yields one batch per contiguous brick range, so a sparse brick sample
    gives many tiny batches; joining them keeps the per-batch cost of the accumulators
    low while memory stays bounded by about twice `rows`.
    """
    pending, count = [], 0
    for batch in batches:
        size = len(next(iter(batch.values()))) if batch else 0
        if not size:
            continue
        pending.append(batch)
        count += size
        if count >= rows:
            yield _join(pending)
            pending, count = [], 0
    if pending:
        yield _join(pending)


def _join(batches):
    if len(batches) == 1:
        return batches[0]
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


def json_ints(values):
    """Integers as JSON takes them (`numbers.json`)."""
    return [int(v) for v in values]


def json_floats(values):
    """Floats as JSON takes them (`numbers.json`): NaN and infinities as null."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, np.float64)]
