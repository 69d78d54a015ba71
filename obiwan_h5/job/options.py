"""The options of a derive job, checked before anything is created or removed."""

import os

from ..errors import InputError
from .writer import MAX_CALL_BYTES

__all__ = ["DeriveOptions"]


class DeriveOptions:
    """Everything that determines the job; inputs default to the simulator's names.

    Parameters
    ----------
    data_dir : str
        Production root holding ``obiwan/`` and ``tractor/``.
    output : str
        The derived HDF5 file.
    randoms, dr_dir, survey_bricks, bricks : str, optional
        Truth table, real DR root, survey-bricks file and brick list; by default
        ``randoms.fits``, ``dr/``, ``survey-bricks.fits`` and ``bricks.txt`` in `data_dir`.
    objtype : str
        Injected object type in file names.
    expect_rsdirs : int, optional
        Bricks with another number of rsdirs are incomplete.
    match_radius : float
        Match radius in arcsec.
    keep_all_apflux, resume, overwrite : bool
    max_memory_mb : float
        Memory per rank for rows between collective writes.
    chunk_kb : int
        HDF5 chunk size per column (0: contiguous).
    mpi_info : dict, optional
        MPI-IO hints.
    alignment : (int, int), optional
        HDF5 alignment threshold and interval.
    max_call_bytes : int
        Largest buffer of one write call.
    randoms_db : str, optional
        libpq connection string (or ``postgresql://`` URI; empty for libpq's defaults) of the
        PostgreSQL database holding the truth table; then `randoms` is not used.
    randoms_table : str, optional
        The truth table in `randoms_db` (``TABLE`` or ``SCHEMA.TABLE``).
    db_connections : int
        At most this many ranks connect to `randoms_db`; the others get their rows over MPI.
    """

    def __init__(self, data_dir, output, randoms=None, dr_dir=None, survey_bricks=None, bricks=None,
                 objtype="elg", expect_rsdirs=None, match_radius=1.0, keep_all_apflux=False,
                 resume=False, overwrite=False, max_memory_mb=256, chunk_kb=4096,
                 mpi_info=None, alignment=None, max_call_bytes=MAX_CALL_BYTES,
                 randoms_db=None, randoms_table=None, db_connections=4):
        self.data_dir = os.path.abspath(data_dir)
        self.output = os.path.abspath(output)
        self.randoms = os.path.abspath(randoms or os.path.join(data_dir, "randoms.fits"))
        self.dr_dir = os.path.abspath(dr_dir or os.path.join(data_dir, "dr"))
        self.survey_bricks = os.path.abspath(survey_bricks or os.path.join(data_dir, "survey-bricks.fits"))
        self.bricks = os.path.abspath(bricks or os.path.join(data_dir, "bricks.txt"))
        self.objtype = objtype
        self.expect_rsdirs = expect_rsdirs
        self.match_radius = float(match_radius)
        self.keep_all_apflux = keep_all_apflux
        self.resume = resume
        self.overwrite = overwrite
        self.max_memory_mb = max_memory_mb
        self.chunk_kb = chunk_kb
        self.mpi_info = mpi_info or {}
        self.alignment = alignment
        self.max_call_bytes = max_call_bytes
        self.randoms_db = randoms_db
        self.randoms_table = randoms_table
        self.db_connections = int(db_connections)
        if randoms_db is not None and not randoms_table:
            raise InputError("`randoms_db` needs `randoms_table`, the truth table in that database")
        if randoms_table and randoms_db is None:
            raise InputError("`randoms_table` needs `randoms_db`, the database holding it (may be empty: libpq defaults)")
        if self.db_connections < 1:
            raise InputError(f"`db_connections` is {db_connections}: at least one rank must connect")

    def fingerprint(self):
        """What must match for `resume` to continue a file (inputs and options); a database
        is recorded by its connection string without any password, and its table."""
        found = {
            "data_dir": self.data_dir, "randoms": self.randoms, "dr_dir": self.dr_dir,
            "survey_bricks": self.survey_bricks, "bricks": self.bricks, "objtype": self.objtype,
            "expect_rsdirs": self.expect_rsdirs, "match_radius_arcsec": self.match_radius,
            "keep_all_apflux": self.keep_all_apflux,
        }
        if self.randoms_db is not None:
            from ..production.truthdb import redact

            found.update(randoms=None, randoms_db=redact(self.randoms_db), randoms_table=self.randoms_table)
        return found

    def check_output(self):
        """Why the output cannot be written with these options, or None."""
        exists = os.path.exists(self.output)
        if exists and not (self.resume or self.overwrite):
            return f"{self.output}: exists; use `overwrite` to replace it or `resume` to complete it"
        directory = os.path.dirname(self.output) or "."
        if not os.path.isdir(directory):
            return f"{directory}: output directory does not exist"
        if not os.access(directory, os.W_OK):
            return f"{directory}: output directory is not writable"
        return None
