"""Registration with astropy's unified I/O: ``Table.read(path, format="obiwan_h5")``.

Importing `obiwan_h5` registers the format — at once when astropy.table is already
imported, otherwise as soon as it is (so the command-line tools, which never need astropy,
do not pay its import time). Auto-detection recognises derived files by their
``format="obiwan_h5"`` attribute; the reader is registered with a priority above astropy's
own ``hdf5`` format (which also claims every HDF5 file), so ``Table.read("derived.h5")``
picks it without an "ambiguous format" error.
"""

import importlib.abc
import os
import stat
import sys

from ..fileformat import FORMAT_NAME

__all__ = ["identify", "read_table", "register", "register_when_astropy_loads"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PRIORITY = 10


def identify(origin, filepath, fileobj, *args, **kwargs):
    """Whether the input is an obiwan_h5 derived file (its signature, then one attribute).

    astropy calls identifiers as ``identify(origin, filepath, fileobj, *args, **kwargs)``
    with the keyword arguments of ``Table.read``/``Table.write``; those include astropy's
    own ``path=`` (the dataset inside an HDF5 file), so the second parameter must not be
    called ``path``; a read given ``path=`` is left to astropy's ``hdf5`` format. Only
    reads are claimed: the format has no writer.
    """
    if origin != "read" or kwargs.get("path") is not None:
        return False  # ``path=`` names a dataset of astropy's own hdf5 format
    if fileobj is not None:
        try:
            start = fileobj.tell()
            signature = fileobj.read(8)
            fileobj.seek(start)
        except (OSError, AttributeError, ValueError):
            return False
        if signature != HDF5_SIGNATURE:
            return False
        filepath = getattr(fileobj, "name", filepath)
    if not isinstance(filepath, (str, os.PathLike)):
        return False
    try:
        if not stat.S_ISREG(os.stat(filepath).st_mode):
            return False  # reading a FIFO or a device to identify it could block forever
        with open(filepath, "rb") as handle:
            if handle.read(8) != HDF5_SIGNATURE:
                return False
        import h5py

        with h5py.File(filepath, "r") as derived:
            return derived.attrs.get("format") == FORMAT_NAME
    except (OSError, ValueError):
        return False


def read_table(path, columns=None, bricks=None, where=None, summary=False):
    """Read a derived file as an astropy Table (rows, or the per-brick summary).

    ``Table.meta`` holds the file attributes (provenance, match radius, bit definitions;
    JSON decoded), each column its unit and description.
    """
    from .reader import DerivedFile

    # astropy may hand over the file it opened to identify the format; read by name
    name = getattr(path, "name", path)
    with DerivedFile(os.fspath(name)) as derived:
        if summary:
            return derived.summary(columns, bricks)
        return derived.read(columns, bricks, where)


def register():
    """Register the ``obiwan_h5`` format with astropy (idempotent)."""
    from astropy.io import registry
    from astropy.table import Table

    if "obiwan_h5" not in registry.get_formats(Table)["Format"]:
        registry.register_reader("obiwan_h5", Table, read_table, priority=PRIORITY)
        registry.register_identifier("obiwan_h5", Table, identify)


class _AfterAstropyTable(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook: lets astropy.table load normally, then registers the format."""

    def find_spec(self, name, path=None, target=None):
        if name != "astropy.table":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        register()


def register_when_astropy_loads():
    """Register now if astropy.table is loaded, else right after it is first imported."""
    if "astropy.table" in sys.modules:
        register()
    elif not any(isinstance(finder, _AfterAstropyTable) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterAstropyTable())
