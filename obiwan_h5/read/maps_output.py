"""Writing selection-function maps (`read.maps`): a partial-sky HEALPix FITS table, or HDF5.

The FITS file follows the HEALPix convention for a partial sky, which healpy, HEALPix's own
tools and astropy read as they are: one binary table HDU (``MAPS``, the first extension)
whose first column ``PIXEL`` holds the pixel numbers and whose header says ``PIXTYPE =
'HEALPIX'``, ``ORDERING`` (``RING`` or ``NESTED``), ``NSIDE``, ``INDXSCHM = 'EXPLICIT'``,
``OBJECT = 'PARTIAL'``, ``GRAIN = 1`` (one pixel per row), ``OBS_NPIX`` (rows) and
``COORDSYS = 'C'`` (celestial: ra, dec). Every column has its unit (``TUNITn``) and a
description (``TCOMMn``, the convention TOPCAT shows); the bits of
``obiwan_mask`` and ``targets_mask`` and the derived file's provenance are in the header as
in the FITS export. Fractions undefined in a pixel (completeness with no true-selected
source) are NaN.

The HDF5 file holds the same columns as datasets (``pixel`` first), with ``unit`` and
``description`` attributes, and the same facts as root attributes (lower case).

`meta` of the writers: ``derived`` (the open `reader.DerivedFile`), ``rows`` (injected
sources counted) and ``command_line``.
"""

import textwrap

import numpy as np

from .. import __version__
from ..core.maps import MAP_COLUMNS
from ..fileformat import attr_value
from ..outputs import writing
from .common import new_hdf5, utc_now
from .fits_header import COMMENT_TEXT, card_text, write_bits, write_descriptions, write_empty_primary, write_provenance
from .metadata import fits_unit

__all__ = ["MAPS_FORMAT", "healpix_keywords", "write_fits", "write_hdf5"]

# the `format` attribute of a maps HDF5 file (not a derived file: obiwan_h5.open refuses it)
MAPS_FORMAT = "obiwan_h5_maps"
PIXEL_DESCRIPTION = "HEALPix pixel number (ORDERING and NSIDE in the header)"
# rows of the FITS table built and appended at a time (about 20 MB)
FITS_SLICE_ROWS = 1 << 16


def healpix_keywords(plan, npixels):
    """``[(keyword, value, comment), ...]`` of the HEALPix convention for this map."""
    import hpgeom

    return [
        ("PIXTYPE", "HEALPIX", "HEALPix pixelisation"),
        ("ORDERING", "NESTED" if plan.nest else "RING", "pixel ordering scheme, RING or NESTED"),
        ("COORDSYS", "C", "celestial (equatorial) coordinates: ra, dec"),
        ("NSIDE", plan.nside, "resolution parameter of HEALPix"),
        ("INDXSCHM", "EXPLICIT", "indexing: pixel numbers in column PIXEL"),
        ("OBJECT", "PARTIAL", "sky coverage: only pixels with injected sources"),
        ("GRAIN", 1, "one pixel per row"),
        ("OBS_NPIX", int(npixels), "pixels in this table"),
        ("PIXAREA", float(hpgeom.nside_to_pixel_area(plan.nside, degrees=True)), "[deg2] area of one pixel"),
    ]


def _layout(columns):
    """``[(name, dtype, unit, description), ...]`` of the table, PIXEL first."""
    return [("PIXEL", np.dtype(np.int64), "", PIXEL_DESCRIPTION)] + [
        (name, np.dtype(dtype), unit, text) for name, (dtype, unit, text) in MAP_COLUMNS.items() if name in columns]


def write_fits(plan, pixels, columns, meta):
    """The map as a partial-sky HEALPix FITS table (HDU ``MAPS``) at ``plan.output``."""
    import fitsio

    layout = _layout(columns)
    dtype = np.dtype([(name, dtype.str) for name, dtype, _, _ in layout])
    with writing(plan.output) as partial:
        write_empty_primary(partial.path)
        with fitsio.FITS(partial.path, "rw") as fits:
            fits.create_table_hdu(dtype=dtype, extname="MAPS", units=[fits_unit(unit) for _, _, unit, _ in layout])
            hdu = fits["MAPS"]
            for keyword, value, comment in healpix_keywords(plan, len(pixels)):
                hdu.write_key(keyword, value, comment=comment)
            write_descriptions(hdu, [text for *_, text in layout])
            derived = meta["derived"]
            write_provenance(hdu, plan.path, derived, plan.where, plan.bricks)
            hdu.write_key("ORIGIN", card_text(f"obiwan_h5 {__version__} maps"))
            hdu.write_key("NBRICKS", len(plan.bricks), comment="done bricks counted")
            hdu.write_key("MAPDATE", utc_now(), comment="creation time of these maps")
            hdu.write_key("NROWS", meta["rows"], comment="injected sources counted")
            if meta["command_line"]:
                for line in textwrap.wrap(f"maps made by: {meta['command_line']}", COMMENT_TEXT):
                    hdu.write_history(line)
            write_bits(hdu, derived.attrs)
            # rows appended a slice at a time: the columns are not held twice over
            for start in range(0, len(pixels), FITS_SLICE_ROWS):
                stop = min(start + FITS_SLICE_ROWS, len(pixels))
                table = np.empty(stop - start, dtype=dtype)
                table["PIXEL"] = pixels[start:stop]
                for name, *_ in layout[1:]:
                    table[name] = columns[name][start:stop]
                hdu.append(table)


def provenance_attrs(plan, meta):
    """The root attributes of a maps HDF5 file: the HEALPix facts, the request and the
    derived file's provenance and bits."""
    attrs = {keyword.lower(): value for keyword, value, _ in healpix_keywords(plan, 0) if keyword != "OBS_NPIX"}
    source = meta["derived"].attrs
    attrs.update({
        "format": MAPS_FORMAT, "software_version": __version__, "creation_time": utc_now(),
        "command_line": meta["command_line"], "source": plan.path, "where": plan.where or "",
        "nbricks": len(plan.bricks), "nrows": meta["rows"],
        "source_software_version": str(source.get("software_version", "")),
        "source_creation_time": str(source.get("creation_time", "")),
        "source_command_line": str(source.get("command_line", "")),
    })
    for key in ("match_radius_arcsec", "obiwan_mask_bits", "targets_mask_bits", "selections"):
        if key in source:
            attrs[key] = source[key]
    return attrs


def write_hdf5(plan, pixels, columns, meta):
    """The map as HDF5 at ``plan.output``: one dataset per column, ``pixel`` first."""

    layout = _layout(columns)
    with writing(plan.output) as partial:
        with new_hdf5(partial, datasets=len(layout)) as out:
            for key, value in sorted(provenance_attrs(plan, meta).items()):
                out.attrs[key] = attr_value(value)
            out.attrs["column_order"] = ",".join(name.lower() for name, *_ in layout)
            out.attrs["obs_npix"] = len(pixels)
            for name, dtype, unit, text in layout:
                values = pixels if name == "PIXEL" else columns[name]
                dset = out.create_dataset(name.lower(), data=np.asarray(values, dtype))
                dset.attrs["description"] = text
                if unit:
                    dset.attrs["unit"] = unit
