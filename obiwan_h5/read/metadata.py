"""What a derived file says about itself, in the forms other tools take.

The file attributes (provenance, match radius, bit definitions) as plain Python values for
an astropy ``Table.meta``, a pandas ``DataFrame.attrs`` or Parquet schema metadata; the bit
definitions of ``obiwan_mask`` and ``targets_mask`` as one list of ``(mask, bit, name,
meaning)``; and units as astropy parses them (without warnings) and as FITS writes them.
"""

import json
import re

import numpy as np

from ..fileformat import MASK_BIT_ATTRS, decode_attrs

__all__ = ["astropy_unit", "bit_definitions", "fits_unit", "plain", "table_meta"]


def plain(value):
    """`value` with numpy scalars, arrays and bytes turned into JSON-friendly Python values."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def table_meta(attrs):
    """The file attributes (a mapping, e.g. ``h5py.File.attrs``) as a plain dict, JSON text
    decoded, in sorted order: what ``Table.meta`` of a read carries."""
    return {key: plain(value) for key, value in sorted(decode_attrs(attrs).items())}


def bit_definitions(attrs):
    """``[(mask, bit, name, meaning), ...]`` of both mask columns, in bit order.

    Reads the file attributes ``obiwan_mask_bits`` and ``targets_mask_bits``, both
    ``{name: {"bit": b, "meaning": m}}`` (`fileformat.mask_bits_attributes`), and the
    form earlier development versions wrote for ``targets_mask_bits``, ``{"b": "name:
    meaning"}``; a mask whose attribute is missing contributes nothing.
    """
    attrs = decode_attrs(attrs) if not isinstance(attrs, dict) else attrs
    found = []
    for mask, key in MASK_BIT_ATTRS.items():
        value = attrs.get(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if not isinstance(value, dict):
            continue
        for name, item in value.items():
            if isinstance(item, dict):  # {name: {"bit": b, "meaning": m}}
                found.append((mask, int(item.get("bit", -1)), str(name), str(item.get("meaning", ""))))
            else:  # {"b": "name: meaning"}
                label, _, meaning = str(item).partition(": ")
                found.append((mask, int(name), label, meaning))
    return sorted(found, key=lambda entry: (list(MASK_BIT_ATTRS).index(entry[0]), entry[1]))


def astropy_unit(text):
    """The astropy unit of a unit attribute (``nanomaggy``, ``1/nanomaggy^2``, ``deg^2``),
    or None when astropy does not know it; never warns."""
    if not text:
        return None
    import astropy.units as u

    try:
        return u.Unit(str(text).replace("^", ""), parse_strict="raise")
    except ValueError:
        return None


_INVERSE_POWER = re.compile(r"^1/([A-Za-z]+)\^(\d+)$")
_POWER = re.compile(r"([A-Za-z]+)\^(\d+)")


def fits_unit(text):
    """The unit as written to a FITS ``TUNIT``: the Legacy Surveys' spelling, with powers
    in the FITS standard's syntax (``1/deg^2`` -> ``deg-2``, ``deg^2`` -> ``deg2``).

    ``nanomaggy`` has no FITS-standard spelling (the standard has no maggy); it is kept,
    as the Legacy Surveys' catalogs write it, together with ``1/nanomaggy^2``.
    """
    text = str(text or "")
    if "nanomaggy" in text:
        return text
    match = _INVERSE_POWER.match(text)
    if match:
        return f"{match.group(1)}-{match.group(2)}"
    return _POWER.sub(r"\1\2", text)
