"""The options of a derive job, checked before anything is created or removed."""

import os

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
    """

    def __init__(self, data_dir, output, randoms=None, dr_dir=None, survey_bricks=None, bricks=None,
                 objtype="elg", expect_rsdirs=None, match_radius=1.0, keep_all_apflux=False,
                 resume=False, overwrite=False, max_memory_mb=256, chunk_kb=4096,
                 mpi_info=None, alignment=None, max_call_bytes=MAX_CALL_BYTES):
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

    def fingerprint(self):
        """What must match for `resume` to continue a file (inputs and options)."""
        return {
            "data_dir": self.data_dir, "randoms": self.randoms, "dr_dir": self.dr_dir,
            "survey_bricks": self.survey_bricks, "bricks": self.bricks, "objtype": self.objtype,
            "expect_rsdirs": self.expect_rsdirs, "match_radius_arcsec": self.match_radius,
            "keep_all_apflux": self.keep_all_apflux,
        }

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
