"""obiwan_h5: post-process obiwan productions into one parallel HDF5 file.

Reading: ``obiwan_h5.open(path)`` (see `obiwan_h5.reader`), or
``astropy.table.Table.read(path, format="obiwan_h5", columns=[...])`` once this package
is imported.
"""

__version__ = "0.1.0"

from .astropy_io import register_when_astropy_loads  # noqa: E402
from .reader import DerivedFile, open  # noqa: E402,F401

register_when_astropy_loads()
