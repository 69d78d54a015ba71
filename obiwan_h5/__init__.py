"""obiwan_h5: post-process obiwan productions into one parallel HDF5 file.

Reading: ``obiwan_h5.open(path)`` (see `obiwan_h5.read.reader`), or
``astropy.table.Table.read(path, format="obiwan_h5", columns=[...])`` once this package
is imported. Importing the package is cheap: h5py, mpi4py and matplotlib load only when
something needs them.
"""

__version__ = "0.1.0"

__all__ = ["DerivedFile", "__version__", "open"]


def open(path):  # noqa: A001 (the package's natural verb, like h5py.File / fitsio.FITS)
    """Open a derived file for reading; see `obiwan_h5.read.reader.DerivedFile`."""
    from .read.reader import DerivedFile

    return DerivedFile(path)


def __getattr__(name):
    if name == "DerivedFile":
        from .read.reader import DerivedFile

        return DerivedFile
    raise AttributeError(f"module 'obiwan_h5' has no attribute {name!r}")


def _register_astropy_format():
    from .read.astropy_io import register_when_astropy_loads

    register_when_astropy_loads()


_register_astropy_format()
