"""Registration with astropy's unified I/O: ``Table.read(path, format="obiwan_h5")``.

Importing `obiwan_h5` registers the format. Auto-detection recognises derived files by their
``format="obiwan_h5"`` attribute; the reader is registered with a priority above astropy's own
``hdf5`` format (which also claims every HDF5 file), so ``Table.read("derived.h5")`` picks it
without an "ambiguous format" error.
"""

import os

from astropy.io import registry
from astropy.table import Table

__all__ = ["identify", "read_table"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PRIORITY = 10


def identify(origin, path, fileobj, *args, **kwargs):
    """Whether `path` is an obiwan_h5 derived file (reads the signature, then one attribute)."""
    if origin != "read" or path is None or not isinstance(path, (str, os.PathLike)):
        return False
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != HDF5_SIGNATURE:
                return False
        import h5py

        with h5py.File(path, "r") as derived:
            return derived.attrs.get("format") == "obiwan_h5"
    except OSError:
        return False


def read_table(path, columns=None, bricks=None, where=None, summary=False):
    """Read a derived file as an astropy Table (rows, or the per-brick summary)."""
    from .reader import DerivedFile

    # astropy may hand over the file it opened to identify the format; read by name
    name = getattr(path, "name", path)
    with DerivedFile(os.fspath(name)) as derived:
        if summary:
            return derived.summary(columns, bricks)
        return derived.read(columns, bricks, where)


if "obiwan_h5" not in registry.get_formats(Table)["Format"]:
    registry.register_reader("obiwan_h5", Table, read_table, priority=PRIORITY)
    registry.register_identifier("obiwan_h5", Table, identify)
