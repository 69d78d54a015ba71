"""The model of a synthetic production: sky, bricks, real sources, injected randoms, and
Tractor measurements of them (DR5 or DR3 schema). Pure numpy, driven by numpy Generators;
`simulate` writes what this draws.
"""

import numpy as np

from ..errors import InputError
from ..fileformat import BANDS, injected_flux_column, transmission_column

WISE = ("w1", "w2", "w3", "w4")
# DECam ugrizY and WISE W1-W4 extinction coefficients A/E(B-V) used by DR3/DR5
EXTINCTION = {"u": 3.995, "g": 3.214, "r": 2.165, "i": 1.592, "z": 1.211, "Y": 1.064,
              "w1": 0.184, "w2": 0.113, "w3": 0.0241, "w4": 0.00910}
PIXSCALE = 0.262  # arcsec per pixel
BRICK_PIX = 3600
APRADII = np.array([0.5, 0.75, 1.0, 1.5, 2.0, 3.5, 5.0, 7.0])  # arcsec, DR5 apertures
# nominal 5-sigma galaxy (0.45" REX) depths of DECaLS DR5; point sources go ~0.3 mag deeper
GALDEPTH = np.array([24.0, 23.4, 22.5])
PSF_GAIN = 0.3
RELEASE_DR5 = 5000
ON_REAL_FRACTION = 0.07  # randoms deliberately within 1" of a real source
ON_REAL_RADIUS = 0.9  # arcsec
BLEND_RADIUS = 0.5  # arcsec: closer than this the random blends into the real source
DEV_RADIUS_SCALE = 1.3  # shapedev_r of a DEV fit / the radius an exponential fit measures
TYPES_DR5 = np.array([b"PSF ", b"REX ", b"DEV ", b"EXP ", b"COMP"])
PSF, REX, DEV, EXP, COMP = range(5)


# --------------------------------------------------------------------------- schemas

def tractor_dtype(schema="dr5"):
    """numpy dtype of a Tractor catalog row in the DR5 or DR3 schema (lower-case names).

    Parameters
    ----------
    schema : {"dr5", "dr3"}
        DR5: per-band scalar columns (``flux_g``, ``nobs_g`` ...). DR3: ``decam_*`` arrays
        over ugrizY (g = 1, r = 2, z = 4) and ``wise_*`` arrays over W1-W4, no ``release``.
    """
    head = [("brickid", "i4"), ("brickname", "S8"), ("objid", "i4"), ("brick_primary", "?"),
            ("type", "S4"), ("ra", "f8"), ("dec", "f8"), ("ra_ivar", "f4"), ("dec_ivar", "f4"),
            ("bx", "f4"), ("by", "f4"), ("dchisq", "f4", (5,)), ("ebv", "f4")]
    shape = [("fracdev", "f4"), ("fracdev_ivar", "f4")]
    for model in ("shapeexp", "shapedev"):
        for par in ("r", "e1", "e2"):
            shape += [(f"{model}_{par}", "f4"), (f"{model}_{par}_ivar", "f4")]
    if schema == "dr3":
        six, four = (6,), (4,)
        body = [(f"decam_{c}", "f4", six) for c in ("flux", "flux_ivar")]
        body += [(f"decam_{c}", "f4", (6, 8)) for c in ("apflux", "apflux_resid", "apflux_ivar")]
        body += [("decam_mw_transmission", "f4", six), ("decam_nobs", "u1", six),
                 ("decam_rchi2", "f4", six), ("decam_fracflux", "f4", six),
                 ("decam_fracmasked", "f4", six), ("decam_fracin", "f4", six),
                 ("decam_anymask", "i2", six), ("decam_allmask", "i2", six),
                 ("decam_psfsize", "f4", six), ("decam_depth", "f4", six),
                 ("decam_galdepth", "f4", six)]
        body += [(f"wise_{c}", "f4", four) for c in ("flux", "flux_ivar", "mw_transmission")]
        body += [("wise_nobs", "i2", four), ("wise_fracflux", "f4", four), ("wise_rchi2", "f4", four)]
        return np.dtype(head + body + shape)
    if schema != "dr5":
        raise InputError(f"unknown schema {schema!r} (dr5 or dr3)")
    allb = BANDS + WISE
    body = [(f"{c}_{b}", "f4") for c in ("flux", "flux_ivar") for b in allb]
    body += [(f"{c}_{b}", "f4", (8,)) for c in ("apflux", "apflux_resid", "apflux_ivar") for b in BANDS]
    body += [(f"mw_transmission_{b}", "f4") for b in allb]
    body += [(f"nobs_{b}", "i2") for b in allb]
    body += [(f"{c}_{b}", "f4") for c in ("rchisq", "fracflux") for b in allb]
    body += [(f"{c}_{b}", "f4") for c in ("fracmasked", "fracin") for b in BANDS]
    body += [(f"{c}_{b}", "i2") for c in ("anymask", "allmask") for b in BANDS]
    body += [("wisemask_w1", "u1"), ("wisemask_w2", "u1")]
    body += [(f"{c}_{b}", "f4") for c in ("psfsize", "psfdepth", "galdepth") for b in BANDS]
    body += [("wise_coadd_id", "S8")]
    return np.dtype([("release", "i2")] + head + body + shape)


SIMCAT_DTYPE = np.dtype([("id", "i8"), ("ra", "f8"), ("dec", "f8"), ("x", "f4"), ("y", "f4")]
                        + [(injected_flux_column(b), "f4") for b in BANDS]
                        + [(transmission_column(b), "f4") for b in BANDS]
                        + [(c, "f4") for c in ("n", "rhalf", "e1", "e2")])
TRUTH_DTYPE = np.dtype([("id", "i8"), ("ra", "f8"), ("dec", "f8")]
                       + [(c, "f8") for c in ("g", "r", "z", "rhalf", "n", "ba", "pa", "e1", "e2", "redshift")])
METACAT_DTYPE = np.dtype([("brickname", "S8"), ("objtype", "S8"), ("rsdir", "S16"), ("nobj", "i4"),
                          ("startid", "i8"), ("seed", "i8"), ("zoom", "i4", (4,)), ("bands", "S3"),
                          ("pixscale", "f4"), ("schema", "S3")])


# ----------------------------------------------------------------------- sky helpers

def ebv_map(ra, dec):
    """Smooth, deterministic E(B-V) (mag, about 0.02-0.10) at ``ra``, ``dec`` (degrees).

    A stand-in for SFD98: a few low-order harmonics, so it varies on degree scales and
    only slightly across a brick.
    """
    a, d = np.radians(ra), np.radians(dec)
    wave = (0.5 + 0.25 * np.sin(3 * a + 1.3) * np.cos(4 * d - 0.5)
            + 0.25 * np.sin(7 * a + 5 * d + 0.7) * np.cos(2 * a - d))
    return 0.02 + 0.08 * wave


def transmission(ebv, band):
    """Milky Way transmission in `band` at `ebv`: ``10**(-0.4 EXTINCTION[band] E(B-V))``."""
    return 10 ** (-0.4 * EXTINCTION[band] * ebv)


def _mag_to_flux(mag):
    return 10 ** ((22.5 - mag) / 2.5)


def _depth_to_ivar(mag5):
    # a 5-sigma depth m means sigma = flux(m) / 5 nanomaggies
    return (5.0 / _mag_to_flux(mag5)) ** 2


def _brick_pixels(brick, ra, dec):
    """0-indexed pixel position in the brick's 3600x3600 TAN image (north up, east left)."""
    dec0 = np.radians(brick["dec"])
    dra = np.radians((ra - brick["ra"] + 180.0) % 360.0 - 180.0)
    d = np.radians(dec)
    cosc = np.sin(dec0) * np.sin(d) + np.cos(dec0) * np.cos(d) * np.cos(dra)
    xi = np.degrees(np.cos(d) * np.sin(dra) / cosc)
    eta = np.degrees((np.cos(dec0) * np.sin(d) - np.sin(dec0) * np.cos(d) * np.cos(dra)) / cosc)
    centre = (BRICK_PIX - 1) / 2.0
    return centre - xi * 3600 / PIXSCALE, centre + eta * 3600 / PIXSCALE


def _in_brick(brick, ra, dec):
    width = brick["ra2"] - brick["ra1"]
    return (((ra - brick["ra1"]) % 360.0) < width) & (dec >= brick["dec1"]) & (dec < brick["dec2"])


def _uniform_in_box(rng, n, ra1, ra2, dec1, dec2):
    ra = (ra1 + rng.random(n) * (ra2 - ra1)) % 360.0
    s1, s2 = np.sin(np.radians(dec1)), np.sin(np.radians(dec2))
    dec = np.degrees(np.arcsin(s1 + rng.random(n) * (s2 - s1)))  # uniform on the sphere
    return ra, dec


def _offset(rng, ra, dec, radius_arcsec):
    """Move each position by ``radius`` arcsec in a random direction."""
    angle = rng.uniform(0, 2 * np.pi, len(ra))
    ddec = radius_arcsec * np.cos(angle) / 3600.0
    dra = radius_arcsec * np.sin(angle) / 3600.0 / np.cos(np.radians(dec))
    return (ra + dra) % 360.0, dec + ddec


def _unwise_tile(ra, dec):
    # unWISE coadd tiles are ~1.56° apart; name the nearest node of a 1.5° grid like them
    ra_code = np.round((np.round(ra / 1.5) * 1.5) % 360.0 * 10).astype(np.int64)
    dec_code = np.round(np.round(dec / 1.5) * 15).astype(np.int64)
    nodes, inverse = np.unique(np.column_stack([ra_code, dec_code]), axis=0, return_inverse=True)
    names = np.array([f"{a:04d}{'p' if d >= 0 else 'm'}{abs(d):03d}" for a, d in nodes], dtype="S8")
    return names[inverse.ravel()]


# ------------------------------------------------------------------- brick context

def brick_conditions(rng, brick):
    """Per-brick observing conditions: depths, seeing, mean number of exposures."""
    offset = rng.normal(0, 0.25, 3)
    return {
        "brick": brick,
        "galdepth": GALDEPTH + offset,
        "psfdepth": GALDEPTH + offset + PSF_GAIN + rng.normal(0, 0.05, 3),
        "psfsize": np.array([1.5, 1.35, 1.25]) * rng.lognormal(0, 0.12),
        "nobs": np.clip(rng.normal(2.8, 0.6, 3), 1.2, 4.5),
    }


def real_sources(rng, brick):
    """True properties of the brick's real sources (stars and galaxies, r = 16-24.5)."""
    n = int(rng.integers(300, 800))
    # a 7" margin puts a few percent of them just outside the brick (brick_primary False)
    margin = 0.002
    ra, dec = _uniform_in_box(rng, n, brick["ra1"] - margin, brick["ra2"] + margin,
                              brick["dec1"] - margin, brick["dec2"] + margin)
    slope = 0.35 * np.log(10)  # Euclidean-ish counts, dN/dm ~ 10^(0.35 m)
    lo, hi = np.exp(slope * 16.0), np.exp(slope * 24.5)
    r = np.log(lo + rng.random(n) * (hi - lo)) / slope
    kind = rng.choice(5, size=n, p=[0.25, 0.40, 0.12, 0.20, 0.03])
    kind[(r > 23.3) & (kind > REX)] = REX  # faint sources are too small to fit shapes
    star = kind == PSF
    gr = np.where(star, rng.normal(0.9, 0.45, n), rng.normal(0.9, 0.35, n))
    rz = np.where(star, rng.normal(0.4, 0.3, n), rng.normal(0.7, 0.3, n))
    mags = np.stack([r + gr, r, r - rz], axis=1)
    rhalf = np.select([kind == PSF, kind == REX, kind == DEV, kind == COMP],
                      [0.0, rng.uniform(0.3, 1.0, n), rng.lognormal(np.log(1.2), 0.4, n),
                       rng.lognormal(np.log(1.5), 0.4, n)],
                      rng.lognormal(np.log(0.9), 0.4, n))
    emod = np.where(kind >= DEV, rng.uniform(0, 0.6, n), 0.0)
    phi = rng.uniform(0, np.pi, n)
    zflux = _mag_to_flux(mags[:, 2])
    wise = zflux[:, None] * np.where(star, 0.5, 1.2)[:, None] * rng.lognormal(0, 0.3, (n, 1)) \
        * np.array([1.0, 0.8, 2.0, 3.0])
    return {"ra": ra, "dec": dec, "mag": mags, "kind": kind, "rhalf": rhalf,
            "e1": emod * np.cos(2 * phi), "e2": emod * np.sin(2 * phi), "wise_true": wise}


# ------------------------------------------------------------------------ measuring

def image_fluxes(ra, dec, mags, wise_true):
    """Fluxes as they appear in the images: true fluxes times the Milky Way transmission."""
    ebv = ebv_map(ra, dec)
    mw = np.stack([transmission(ebv, b) for b in BANDS], axis=1).astype(np.float32)
    mww = np.stack([transmission(ebv, b) for b in WISE], axis=1).astype(np.float32)
    return _mag_to_flux(mags) * mw, wise_true * mww


def _snr(cond, flux):
    """Total detection S/N over g, r, z at the brick's galaxy depth."""
    return np.sqrt(np.sum(flux ** 2 * _depth_to_ivar(cond["galdepth"]), axis=1))


def measure(rng, cond, src, kind):
    """Tractor measurements (DR5 columns) of sources with true properties `src`.

    Parameters
    ----------
    src : dict
        ``ra, dec`` (true), ``flux`` (N, 3) and ``wflux`` (N, 4) image fluxes,
        ``rhalf, e1, e2`` true shapes.
    kind : ndarray
        Fitted model per source (PSF, REX, DEV, EXP, COMP).
    """
    brick = cond["brick"]
    n = len(kind)
    out = np.zeros(n, dtype=tractor_dtype("dr5"))
    flux, rhalf = src["flux"], src["rhalf"]
    out["release"] = RELEASE_DR5
    out["brickid"] = brick["brickid"]
    out["brickname"] = brick["brickname"]
    out["type"] = TYPES_DR5[kind]

    nobs = np.clip(1 + rng.poisson(cond["nobs"] - 1, (n, 3)), 1, 5)
    # depth grows with the number of exposures; a little scatter on top
    scale = nobs / cond["nobs"] * rng.lognormal(0, 0.06, (n, 3))
    psf_ivar = _depth_to_ivar(cond["psfdepth"]) * scale
    gal_ivar = _depth_to_ivar(cond["galdepth"]) * scale
    size = np.where(kind == PSF, 0.0, np.maximum(rhalf, 0.45))
    shrink = (1 + (0.45 / 0.8) ** 2) / (1 + (size / 0.8) ** 2)  # = 1 for a 0.45" REX
    flux_ivar = np.where((kind == PSF)[:, None], psf_ivar, np.minimum(psf_ivar, gal_ivar * shrink[:, None]))
    sigma = 1 / np.sqrt(flux_ivar)
    measured = flux + rng.normal(size=(n, 3)) * sigma
    snr = np.sqrt(np.sum(flux ** 2 * flux_ivar, axis=1)) + 1e-3

    psfsize = cond["psfsize"] * rng.lognormal(0, 0.03, (n, 3))
    pos_err = (0.6 * psfsize[:, 1] + rhalf) / snr  # arcsec, statistical
    pos_sig = np.hypot(0.01, pos_err)
    ra, dec = src["ra"], src["dec"]
    out["dec"] = dec + rng.normal(size=n) * pos_sig / 3600
    out["ra"] = (ra + rng.normal(size=n) * pos_sig / 3600 / np.cos(np.radians(dec))) % 360
    out["ra_ivar"] = out["dec_ivar"] = (3600 / pos_sig) ** 2
    bx, by = _brick_pixels(brick, out["ra"], out["dec"])
    out["bx"], out["by"] = bx, by
    primary = _in_brick(brick, out["ra"], out["dec"])
    out["brick_primary"] = primary

    ebv = ebv_map(out["ra"], out["dec"])
    out["ebv"] = ebv
    for i, b in enumerate(BANDS):
        out[f"flux_{b}"] = measured[:, i]
        out[f"flux_ivar_{b}"] = flux_ivar[:, i]
        out[f"mw_transmission_{b}"] = transmission(ebv, b)
        out[f"nobs_{b}"] = nobs[:, i]
        out[f"psfdepth_{b}"] = psf_ivar[:, i]
        out[f"galdepth_{b}"] = gal_ivar[:, i]
        out[f"psfsize_{b}"] = psfsize[:, i]
        out[f"rchisq_{b}"] = rng.lognormal(0, 0.3, n)
        out[f"fracflux_{b}"] = rng.exponential(0.02, n)
        out[f"fracmasked_{b}"] = np.minimum(rng.exponential(0.005, n), 1)
        out[f"fracin_{b}"] = np.where(primary, 1 - np.minimum(rng.exponential(0.003, n), 0.2),
                                      rng.uniform(0.5, 1.0, n))
        _apertures(rng, out, b, src["flux"][:, i], measured[:, i], psf_ivar[:, i], psfsize[:, i], rhalf)
        _masks(rng, out, b, n)
    wivar = np.array([2.4, 0.47, 7e-4, 1e-5]) * rng.lognormal(0, 0.1, (n, 1))
    for i, b in enumerate(WISE):
        out[f"flux_{b}"] = src["wflux"][:, i] + rng.normal(size=n) / np.sqrt(wivar[:, i])
        out[f"flux_ivar_{b}"] = wivar[:, i]
        out[f"mw_transmission_{b}"] = transmission(ebv, b)
        out[f"nobs_{b}"] = rng.integers(80, 250, n) if i < 2 else rng.integers(10, 40, n)
        out[f"rchisq_{b}"] = rng.lognormal(0, 0.4, n)
        out[f"fracflux_{b}"] = rng.exponential(0.1, n)
    for b in ("w1", "w2"):
        out[f"wisemask_{b}"] = np.where(rng.random(n) < 0.02, 1 << rng.integers(0, 8, n), 0)
    out["wise_coadd_id"] = _unwise_tile(out["ra"], out["dec"])
    _shapes(rng, out, kind, src, snr)
    _dchisq(rng, out, kind, snr, rhalf)
    return out


def _apertures(rng, out, band, true_flux, measured, psf_ivar, psfsize, rhalf):
    # Gaussian approximation of the seeing-convolved profile (r_half = 1.177 sigma)
    sig_psf = psfsize / 2.355
    sig = np.sqrt(sig_psf ** 2 + (rhalf / 1.1774) ** 2)
    frac = 1 - np.exp(-APRADII ** 2 / (2 * sig[:, None] ** 2))
    # sky noise grows with aperture area relative to the PSF's effective area 4 pi sigma^2
    ivar = psf_ivar[:, None] * 4 * sig_psf[:, None] ** 2 / APRADII ** 2
    ap = true_flux[:, None] * frac + rng.normal(size=frac.shape) / np.sqrt(ivar)
    out[f"apflux_{band}"] = ap
    out[f"apflux_resid_{band}"] = ap - measured[:, None] * frac
    out[f"apflux_ivar_{band}"] = ivar


def _masks(rng, out, band, n):
    # a few percent touch bad/saturated/interpolated/CR/edge pixels in some exposure
    bits = np.array([1, 2, 4, 16, 32], dtype=np.int16)
    any_ = np.where(rng.random(n) < 0.03, bits[rng.integers(0, 5, n)], 0)
    out[f"anymask_{band}"] = any_
    out[f"allmask_{band}"] = np.where(rng.random(n) < 0.3, any_, 0)


def _shapes(rng, out, kind, src, snr):
    n = len(kind)
    e_sig = np.minimum(0.3, 3.0 / snr)
    # the radius has the relative error the ellipticity has in absolute terms (3/(S/N), at
    # most 30%), and the ivar written is that of the noise added, so (measured - true) *
    # sqrt(ivar) is a unit normal, as for fluxes (the 0.05" floor touches ~1% of the faintest)
    r_sig = np.maximum(src["rhalf"], 0.15) * e_sig
    r_meas = np.maximum(src["rhalf"] + rng.normal(size=n) * r_sig, 0.05)
    e1 = np.clip(src["e1"] + rng.normal(size=n) * e_sig, -0.9, 0.9)
    e2 = np.clip(src["e2"] + rng.normal(size=n) * e_sig, -0.9, 0.9)
    r_ivar = 1 / r_sig ** 2
    e_ivar = 1 / e_sig ** 2
    exp = (kind == REX) | (kind == EXP) | (kind == COMP)
    dev = (kind == DEV) | (kind == COMP)
    round_ = kind == REX  # REX is fitted round
    out["shapeexp_r"] = np.where(exp, r_meas, 0)
    out["shapeexp_r_ivar"] = np.where(exp, r_ivar, 0)
    for c, val in (("e1", e1), ("e2", e2)):
        out[f"shapeexp_{c}"] = np.where(exp & ~round_, val, 0)
        out[f"shapeexp_{c}_ivar"] = np.where(exp & ~round_, e_ivar, 0)
        out[f"shapedev_{c}"] = np.where(dev, val, 0)
        out[f"shapedev_{c}_ivar"] = np.where(dev, e_ivar, 0)
    # a de Vaucouleurs fit gives a larger radius than the injected profile's half-light
    # radius (a profile mismatch); its error scales with it
    out["shapedev_r"] = np.where(dev, r_meas * DEV_RADIUS_SCALE, 0)
    out["shapedev_r_ivar"] = np.where(dev, r_ivar / DEV_RADIUS_SCALE ** 2, 0)
    fracdev = np.select([kind == DEV, kind == COMP], [1.0, rng.uniform(0.2, 0.8, n)], 0.0)
    out["fracdev"] = fracdev
    # real DR catalogs carry fracdev_ivar = 1 for pure DEV fits
    out["fracdev_ivar"] = np.select([kind == DEV, kind == COMP], [1.0, (snr / 5) ** 2], 0.0)


def _dchisq(rng, out, kind, snr, rhalf):
    n = len(kind)
    base = snr ** 2
    gain = rng.uniform(0.002, 0.08, (n, 3)) * np.minimum(rhalf, 2.0)[:, None]  # REX, DEV, EXP
    gain[np.arange(n), np.clip(kind, 1, 3) - 1] += np.where(kind == PSF, 0, 0.02)
    gain[kind == PSF] = -rng.uniform(0.0005, 0.01, ((kind == PSF).sum(), 3))
    comp = gain.max(axis=1) + np.where(kind == COMP, 0.03, 0.0005)
    out["dchisq"] = base[:, None] * np.column_stack([np.ones(n), 1 + gain, 1 + comp])


# ------------------------------------------------------------------------ injecting

MAX_SKIPPED = 5


def _truth(rng, brick, n, dr):
    """True properties of `n` ELG-like randoms in the brick; some sit on real sources.

    Returns the truth table rows (ids left 0) and, per random, the row of the DR catalog
    `dr` it was placed on (-1 if none) and the separation in arcsec.
    """
    t = np.zeros(n, dtype=TRUTH_DTYPE)
    ra, dec = _uniform_in_box(rng, n, brick["ra1"], brick["ra2"], brick["dec1"], brick["dec2"])
    host = np.full(n, -1)
    sep = np.full(n, np.inf)
    candidates = np.flatnonzero(dr["brick_primary"])
    m = rng.binomial(n, ON_REAL_FRACTION)
    if m and len(candidates):
        # deliberately placed, so the fraction on real sources does not need a
        # dense (and slow) real catalog
        idx = rng.choice(n, m, replace=False)
        host[idx] = rng.choice(candidates, m)
        sep[idx] = ON_REAL_RADIUS * np.sqrt(rng.random(m))
        ra[idx], dec[idx] = _offset(rng, dr["ra"][host[idx]], dr["dec"][host[idx]], sep[idx])
    t["ra"], t["dec"] = ra, dec
    # ELG-like: g 21-24.6 (past the depth, so recovery falls to ~0), colours around the
    # DESI/eBOSS ELG boxes with enough scatter that a fair fraction falls outside them
    t["g"] = rng.uniform(21.0, 24.6, n)
    t["r"] = t["g"] - rng.normal(0.35, 0.2, n)
    t["z"] = t["r"] - rng.normal(0.75, 0.3, n)
    sersic = rng.choice([0.0, 1.0, 4.0], size=n, p=[0.05, 0.72, 0.23])
    t["n"] = sersic
    point = sersic == 0
    t["rhalf"] = np.where(point, 0.0, np.clip(rng.lognormal(np.log(0.45), 0.45, n), 0.15, 3.0))
    t["ba"] = np.where(point, 1.0, rng.uniform(0.2, 1.0, n))
    t["pa"] = rng.uniform(0, 180, n)
    e = (1 - t["ba"]) / (1 + t["ba"])
    t["e1"] = e * np.cos(np.radians(2 * t["pa"]))
    t["e2"] = e * np.sin(np.radians(2 * t["pa"]))
    t["redshift"] = np.clip(rng.normal(1.0, 0.25, n), 0.6, 1.6)
    return t, host, sep


def _fitted_kind(rng, sersic, rhalf, snr):
    """Tractor model chosen for a recovered random: follows n, but faint or small -> PSF/REX."""
    u = rng.random(len(sersic))
    faint = (snr < 12) | (rhalf < 0.3)
    return np.select(
        [sersic == 0,
         faint & (sersic == 1), faint,
         sersic == 1, sersic == 4],
        [np.where(u < 0.9, PSF, REX),
         np.where(u < 0.7, REX, PSF), np.where(u < 0.6, REX, PSF),
         np.select([u < 0.8, u < 0.92, u < 0.97], [EXP, REX, DEV], COMP),
         np.select([u < 0.75, u < 0.85, u < 0.95], [DEV, EXP, REX], COMP)],
        REX)


def _off_ccd(rng, x):
    """Randoms that touched no CCD: a chip-gap-like band of columns plus a few strays."""
    width = rng.uniform(0.05, 0.12) * BRICK_PIX
    x0 = rng.uniform(100, BRICK_PIX - 100 - width)
    return ((x >= x0) & (x < x0 + width)) | (rng.random(len(x)) < 0.01)


def _remeasure(rng, dr):
    """The real sources as measured again on the modified images: tiny extra scatter."""
    cat = dr.copy()
    pos = 0.1 / np.sqrt(cat["dec_ivar"].astype(np.float64))
    cat["dec"] += rng.normal(size=len(cat)) * pos
    cat["ra"] = (cat["ra"] + rng.normal(size=len(cat)) * pos / np.cos(np.radians(cat["dec"]))) % 360
    for b in BANDS:
        cat[f"flux_{b}"] += 0.1 * rng.normal(size=len(cat)) / np.sqrt(cat[f"flux_ivar_{b}"])
    return cat


def finish(cat, brick):
    """Pixel positions, primary flag, legacypipe-like source order and objid."""
    cat["bx"], cat["by"] = _brick_pixels(brick, cat["ra"], cat["dec"])
    cat["brick_primary"] = _in_brick(brick, cat["ra"], cat["dec"])
    # legacypipe numbers sources blob by blob; sorting in strips of y mimics that order
    cat = cat[np.lexsort((cat["bx"], np.floor(cat["by"] / 100)))]
    cat["objid"] = np.arange(len(cat))
    return cat


def simulate_rsdir(rng, cond, dr, ids, skipped_n):
    """Files of one rsdir: truth rows, simcat, ids added, skipped ids, Tractor catalog."""
    brick = cond["brick"]
    n = len(ids)
    truth, host, sep = _truth(rng, brick, n, dr)
    truth["id"] = ids
    skipped = np.zeros(n, dtype=bool)
    skipped[rng.choice(n, skipped_n, replace=False)] = True
    inj, host, sep = truth[~skipped], host[~skipped], sep[~skipped]

    mags = np.column_stack([inj[b] for b in BANDS])
    ztrue = _mag_to_flux(inj["z"])
    wise_true = (ztrue * 1.3 * rng.lognormal(0, 0.3, len(inj)))[:, None] * np.array([1.0, 0.8, 2.0, 3.0])
    ebv = ebv_map(inj["ra"], inj["dec"])
    simcat = np.zeros(len(inj), dtype=SIMCAT_DTYPE)
    for name in ("id", "ra", "dec", "n", "rhalf", "e1", "e2"):
        simcat[name] = inj[name]
    simcat["x"], simcat["y"] = _brick_pixels(brick, inj["ra"], inj["dec"])
    for i, b in enumerate(BANDS):
        mw = transmission(ebv, b).astype(np.float32)
        simcat[transmission_column(b)] = mw
        # as added to the images: the true flux times the (stored) transmission
        simcat[injected_flux_column(b)] = _mag_to_flux(mags[:, i]) * mw
    added = ~_off_ccd(rng, simcat["x"])

    flux = np.column_stack([simcat[injected_flux_column(b)] for b in BANDS]).astype(np.float64)
    mww = np.column_stack([transmission(ebv, b) for b in WISE])
    snr = _snr(cond, flux)
    p_rec = 0.99 / (1 + np.exp(-(snr - 10) / 2.5))
    recovered = added & (rng.random(len(inj)) < p_rec)
    blended = recovered & (sep < BLEND_RADIUS)
    alone = recovered & ~blended

    rerun = _remeasure(rng, dr)
    for i, b in enumerate(BANDS):
        np.add.at(rerun[f"flux_{b}"], host[blended], flux[blended, i].astype(np.float32))
    src = {"ra": inj["ra"][alone], "dec": inj["dec"][alone], "flux": flux[alone],
           "wflux": (wise_true * mww)[alone], "rhalf": inj["rhalf"][alone],
           "e1": inj["e1"][alone], "e2": inj["e2"][alone]}
    kind = _fitted_kind(rng, inj["n"][alone], inj["rhalf"][alone], snr[alone])
    found = measure(rng, cond, src, kind)
    near = np.isfinite(sep[alone])
    found["fracflux_r"][near] = rng.uniform(0.2, 2.0, near.sum())  # light of the neighbour
    tractor = finish(np.concatenate([rerun, found]), brick)
    return {"truth": truth, "simcat": simcat, "ids_added": inj["id"][added],
            "skipped": truth["id"][skipped], "tractor": tractor}


# --------------------------------------------------------------------------- bricks
