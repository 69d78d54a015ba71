"""The on-disk contract of a derived file (docs/format.md): names, statuses, bits, attributes.

Every module that writes or reads a derived file takes these facts from here, so the
writer, the readers, `validate` and the generated reference (docs/format.md) cannot
disagree. Nothing here does IO.
"""

import json
import re

import numpy as np

from ..errors import InputError

__all__ = [
    "ATTR_COMPLETE", "BANDS", "BRICKNAME_RE", "CREATION_ATTRS", "DONE", "FAILED", "FORMAT_NAME",
    "FORMAT_VERSION", "GROUPS", "INCOMPLETE", "INDEX_COLUMNS", "INDEX_DESCRIPTIONS", "INDEX_DTYPES",
    "JSON_ATTRS",
    "MASK_BIT_ATTRS", "MEASURED_TARGETS", "MESSAGE_WIDTH", "OBIWAN_BITS", "OBIWAN_DEFINED", "ON_REAL_SOURCE_BIT",
    "PENDING", "RECOVERED_BIT", "SELECTIONS", "SELECTION_LABELS", "STATUS_NAMES", "TARGET_BITS", "TARGET_MASK_BITS",
    "TRACTOR_TYPES", "VIEW_ATTRS", "attr_value", "bit_set", "bitmask", "brickname_problem", "check_brickname", "decode_attrs",
    "index_problem", "is_recovered", "is_selected", "mask_bits_attributes", "mask_value", "target_bit",
    "truncate_message",
]

FORMAT_NAME = "obiwan_h5"
FORMAT_VERSION = 1
GROUPS = ("randoms", "summary", "bricks")

# /bricks/status codes
PENDING, DONE, INCOMPLETE, FAILED = 0, 1, 2, 3
STATUS_NAMES = {PENDING: "pending", DONE: "done", INCOMPLETE: "incomplete", FAILED: "failed"}

# /bricks/message is fixed-width bytes (parallel HDF5 cannot write variable-length strings)
MESSAGE_WIDTH = 160

INDEX_DESCRIPTIONS = {
    "name": "brick name",
    "offset": "first row of the brick in /randoms",
    "count": "rows of the brick in /randoms",
    "status": ", ".join(f"{code} {name}" for code, name in STATUS_NAMES.items()).replace(
        "incomplete", "incomplete (skipped)"),
    "message": "why a brick is incomplete or failed (truncated with '...'; full text in the log)",
    "checksum": "CRC-32 of the brick's rows as written (fileformat.rows_checksum); 0 until done",
    "fingerprint": "64-bit hash of the path, size and mtime of every input file of the brick when its rows "
                   "were written; 0 until done (a resumed job derives again a brick whose inputs changed)",
}
# the index datasets every reader needs (checksum came later and is optional to readers)
INDEX_COLUMNS = ("name", "offset", "count", "status", "message")
# the dtype of every index dataset the derive job writes
INDEX_DTYPES = {"name": np.dtype("S8"), "offset": np.dtype(np.int64), "count": np.dtype(np.int64),
                "status": np.dtype(np.int8), "message": np.dtype(f"S{MESSAGE_WIDTH}"),
                "checksum": np.dtype(np.uint32), "fingerprint": np.dtype(np.uint64)}

BRICKNAME_RE = re.compile(r"^\d{4}[pm]\d{3}$", re.ASCII)
BANDS = ("g", "r", "z")
TRACTOR_TYPES = ("PSF", "SIMP", "REX", "EXP", "DEV", "COMP")

# the bits of the two masks: name -> (bit, meaning); the one wording of each meaning,
# written into every file (`mask_bits_attributes`) and shown by docs/format.md. Code asks
# for a bit here (`RECOVERED_BIT`, `target_bit`, `is_recovered`, `is_selected`) and never
# defines one of its own (tests/test_architecture.py).
RECOVERED_BIT, ON_REAL_SOURCE_BIT = 0, 1
OBIWAN_BITS = {
    "recovered": (RECOVERED_BIT, "a brick_primary Tractor source (any Tractor source when the catalogs "
                                 "have no brick_primary) lies within the match radius of the injected position"),
    "on_real_source": (ON_REAL_SOURCE_BIT, "recovered, and the injected position lies within the match radius "
                                           "of a source of the real (unmodified) DR catalog of the brick"),
}
_MEASURED = ("recovered source passing the {} selection on Tractor-measured de-extincted fluxes, including "
             "{}brick_primary")
_TRUE = ("{} colour-magnitude cuts on the true (injected, de-extincted) fluxes; no {}primary cut; set whether or "
         "not recovered")
TARGET_MASK_BITS = {
    "eboss_ngc": (0, _MEASURED.format("eBOSS ELG NGC", "the measured-only depth and mask cuts and ")),
    "eboss_sgc": (1, _MEASURED.format("eBOSS ELG SGC", "the measured-only depth and mask cuts and ")),
    "desi_elg": (2, _MEASURED.format("DESI ELG (FDR)", "")),
    "eboss_ngc_true": (3, _TRUE.format("eBOSS ELG NGC", "depth, mask or ")),
    "eboss_sgc_true": (4, _TRUE.format("eBOSS ELG SGC", "depth, mask or ")),
    "desi_elg_true": (5, _TRUE.format("DESI ELG (FDR)", "")),
}
TARGET_BITS = {name: bit for name, (bit, _) in TARGET_MASK_BITS.items()}
# the selections of ``targets_mask``, each with a bit on measured and one on true fluxes
# (``<selection>_true``), in the order of the summary and map columns; their labels
SELECTIONS = ("desi_elg", "eboss_ngc", "eboss_sgc")
SELECTION_LABELS = {"desi_elg": "DESI ELG", "eboss_ngc": "eBOSS ELG NGC", "eboss_sgc": "eBOSS ELG SGC"}
_TRUE_SUFFIX = "_true"
# the file attribute that holds the bits of each mask column
MASK_BIT_ATTRS = {"obiwan_mask": "obiwan_mask_bits", "targets_mask": "targets_mask_bits"}


def mask_bits_attributes():
    """The bit definitions as the file stores them, the same convention for both masks:
    ``{attribute: {bit name: {"bit": b, "meaning": m}}}``.

    (Files of earlier development versions keyed ``targets_mask_bits`` by bit number,
    ``{"2": "desi_elg: meaning"}``; `read.metadata.bit_definitions` reads both.)
    """
    return {MASK_BIT_ATTRS[mask]: {name: {"bit": bit, "meaning": meaning} for name, (bit, meaning) in bits.items()}
            for mask, bits in (("obiwan_mask", OBIWAN_BITS), ("targets_mask", TARGET_MASK_BITS))}


def target_bit(selection, true=False):
    """The ``targets_mask`` bit of `selection` (one of `SELECTIONS`): on measured fluxes,
    or with `true` on the true fluxes (the bit named ``<selection>_true``)."""
    return TARGET_BITS[selection + _TRUE_SUFFIX if true else selection]


def mask_value(bits):
    """The integer with each of `bits` set (``1 << bit`` summed over the distinct bits)."""
    return sum(1 << bit for bit in set(bits))


# every defined bit of ``obiwan_mask``; the measured-flux bits of ``targets_mask``
OBIWAN_DEFINED = mask_value(bit for bit, _ in OBIWAN_BITS.values())
MEASURED_TARGETS = mask_value(target_bit(selection) for selection in SELECTIONS)


def bitmask(flags, dtype=np.uint8):
    """A mask array with bit ``b`` set where ``flags[b]`` is true.

    Parameters
    ----------
    flags : dict
        Bit -> boolean array (the arrays broadcast together).
    dtype : numpy dtype
        Of the mask (``uint8`` for both masks of the file).
    """
    dtype = np.dtype(dtype)
    out = np.zeros(np.broadcast_shapes(*(np.shape(chosen) for chosen in flags.values())), dtype=dtype)
    for bit, chosen in flags.items():
        out |= np.asarray(chosen, bool).astype(dtype) << dtype.type(bit)
    return out


def is_recovered(obiwan_mask):
    """Boolean array: whether each row's ``obiwan_mask`` has the recovered bit."""
    return bit_set(obiwan_mask, RECOVERED_BIT)


def is_selected(targets_mask, selection, true=False):
    """Boolean array: whether each row's ``targets_mask`` has the bit of `selection` (on
    measured fluxes, or with `true` on the true fluxes, as `target_bit`)."""
    return bit_set(targets_mask, target_bit(selection, true))


# root attributes: those the derive job always writes, those stored as JSON text, and
# those that describe a view (a physical copy of a view drops them)
ATTR_COMPLETE = "complete"
CREATION_ATTRS = ("software_version", "creation_time", "command_line", "match_radius_arcsec",
                  "obiwan_mask_bits", "targets_mask_bits", "nranks")
JSON_ATTRS = ("inputs", "obiwan_mask_bits", "targets_mask_bits", "selections")
VIEW_ATTRS = ("view_of", "view_columns", "view_creation_time", "view_software_version")


def check_brickname(brickname):
    """Return `brickname` if it is a Legacy Survey brick name, else raise `InputError`.

    Parameters
    ----------
    brickname : str
        Candidate such as ``"1741p242"``: four ASCII digits of RA·10, ``p``/``m``, three
        digits of |Dec|·10.
    """
    problem = brickname_problem(brickname)
    if problem:
        raise InputError(problem)
    return brickname


def brickname_problem(brickname):
    """Why `brickname` is not a Legacy Survey brick name (`check_brickname`), or None."""
    if not isinstance(brickname, str) or not BRICKNAME_RE.match(brickname):
        return f"{brickname!r} is not a brick name (expected e.g. 1741p242)"
    return None


def index_problem(index, nrows):
    """Why a brick index cannot be trusted to address ``nrows`` rows, or None.

    The index datasets must all exist and agree in length, and the row ranges
    ``[offset[i], offset[i] + count[i])`` must tile ``[0, nrows)`` in brick order, with no
    gap, no overlap and nothing outside (docs/format.md). Readers refuse such a file rather than
    return duplicated or silently dropped rows.
    """
    missing = [name for name in INDEX_COLUMNS if name not in index]
    if missing:
        return f"bricks/{missing[0]} is missing"
    lengths = {name: len(index[name]) for name in INDEX_COLUMNS}
    if len(set(lengths.values())) > 1:
        return "bricks datasets differ in length (" + ", ".join(f"{k} {v}" for k, v in lengths.items()) + ")"
    offset = np.asarray(index["offset"], dtype=np.int64)
    count = np.asarray(index["count"], dtype=np.int64)
    if len(count) == 0:
        return None if nrows == 0 else f"no bricks, but {nrows} rows"
    if np.any(count < 0):
        return f"bricks/count row {int(np.flatnonzero(count < 0)[0])} is negative"
    expected = np.concatenate([[0], np.cumsum(count)[:-1]])
    wrong = np.flatnonzero(offset != expected)
    if len(wrong):
        i = int(wrong[0])
        return (f"bricks/offset row {i} is {int(offset[i])}, expected {int(expected[i])}: "
                "brick row ranges overlap or leave a gap")
    if int(count.sum()) != nrows:
        return f"the bricks hold {int(count.sum())} rows, the randoms datasets {nrows}"
    return None


def bit_set(mask, bit):
    """Boolean array: whether `bit` is set in each element of an integer bitmask."""
    return (np.asarray(mask) & (1 << bit)) != 0


def truncate_message(message, width=MESSAGE_WIDTH):
    """Fixed-width message bytes; a long message loses its middle, shown as '...'.

    Messages read "<file>: <reason>" or "<type>: <reason>". Keeping a third from the start and
    the rest from the end keeps the error type and the reason even behind a long production
    path (the log has the message whole).
    """
    data = message.encode("utf-8", "replace")
    if len(data) <= width:
        return data
    head = width // 3
    cut = data[:head] + b"..." + data[len(data) - (width - head - 3):]
    # a cut through a multi-byte character drops that character
    return cut.decode("utf-8", "ignore").encode("utf-8")


def attr_value(value):
    """A Python value as stored in an HDF5 attribute (dicts and lists as JSON text)."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def decode_attrs(attrs):
    """HDF5 attributes as a dict, JSON text decoded back where it is JSON."""
    result = {}
    for key, value in attrs.items():
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        result[key] = value
    return result
