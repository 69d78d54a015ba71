"""The options of a derive job, checked before anything is created or removed."""

import math
import os

from ..errors import InputError
from ..listfiles import brick_names, is_brick_list_file, read_brick_list
from ..production.inputs import check_regular_file
from ..production.truthdb import DEFAULT_TIMEOUT_S
from .writer import MAX_CALL_BYTES

__all__ = ["COMPRESSIONS", "DEFAULT_COMPRESSION", "DEFAULT_DB_CONNECTIONS", "DeriveOptions"]

# filters every h5py can read without plugins; "none" writes the data as it is
COMPRESSIONS = ("none", "gzip", "lzf")
# chosen by measurement (docs/performance.md, "Compression"): compressing makes derive and
# column reads several times slower; level 1 shrinks within 4 % of levels 4 and 6 at a
# fraction of their derive time
DEFAULT_COMPRESSION = "none"
DEFAULT_GZIP_LEVEL = 1
# ranks that connect to a truth database (`randoms_db`) when not told
DEFAULT_DB_CONNECTIONS = 4


class DeriveOptions:
    """Everything that determines the job; inputs default to the simulator's names.

    Parameters
    ----------
    data_dir : str
        Production root holding ``obiwan/`` and ``tractor/``.
    output : str
        The derived HDF5 file.
    randoms, dr_dir, survey_bricks : str, optional
        Truth table, real DR root and survey-bricks file; by default ``randoms.fits``,
        ``dr/`` and ``survey-bricks.fits`` in `data_dir`.
    bricks : str or sequence of str, optional
        The bricks to derive: a brick-list file (default ``bricks.txt`` in `data_dir`),
        ``-`` (standard input, read by rank 0), a comma list or a sequence of names.
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
    compression : {"none", "gzip", "lzf"}
        HDF5 filter of the randoms and summary columns (needs chunks: `chunk_kb` > 0).
    compression_level : int, optional
        gzip level 1-9 (default `DEFAULT_GZIP_LEVEL`); only with gzip.
    shuffle : bool
        Byte-shuffle filter before the compression (ignored without compression).
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
    db_connections : int, optional
        At most this many ranks connect to `randoms_db` (default `DEFAULT_DB_CONNECTIONS`);
        the others get their rows over MPI. Only with `randoms_db`.
    db_timeout : float, optional
        The longest wait for `randoms_db`, in seconds: to connect and for each reply
        (default `production.truthdb.DEFAULT_TIMEOUT_S`). Only with `randoms_db`.
    """

    def __init__(self, data_dir, output, randoms=None, dr_dir=None, survey_bricks=None, bricks=None,
                 objtype="elg", expect_rsdirs=None, match_radius=1.0, keep_all_apflux=False,
                 resume=False, overwrite=False, max_memory_mb=256, chunk_kb=4096,
                 mpi_info=None, alignment=None, max_call_bytes=MAX_CALL_BYTES, update=False,
                 verify_inputs=False, randoms_db=None, randoms_table=None, db_connections=None,
                 compression=DEFAULT_COMPRESSION, compression_level=None, shuffle=True, db_timeout=None):
        self.data_dir = os.path.abspath(data_dir)
        self.output = os.path.abspath(output)
        self.randoms = os.path.abspath(randoms or os.path.join(data_dir, "randoms.fits"))
        self.dr_dir = os.path.abspath(dr_dir or os.path.join(data_dir, "dr"))
        self.survey_bricks = os.path.abspath(survey_bricks or os.path.join(data_dir, "survey-bricks.fits"))
        self.bricks = _brick_source(bricks, data_dir)
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
        self.update = update
        self.verify_inputs = verify_inputs
        self.randoms_db = randoms_db
        self.randoms_table = randoms_table
        self.db_connections = DEFAULT_DB_CONNECTIONS if db_connections is None else int(db_connections)
        self.db_timeout = DEFAULT_TIMEOUT_S if db_timeout is None else float(db_timeout)
        self.compression = "none" if compression in (None, False) else str(compression)
        self.compression_level = compression_level
        self.shuffle = bool(shuffle)
        if self.compression not in COMPRESSIONS:
            raise InputError(f"`compression` {compression!r}: expected one of {', '.join(COMPRESSIONS)}")
        if compression_level is not None and self.compression != "gzip":
            raise InputError("`compression_level` applies to gzip only")
        if self.compression == "gzip" and compression_level is None:
            self.compression_level = DEFAULT_GZIP_LEVEL
        if randoms_db is not None and not randoms_table:
            raise InputError("`randoms_db` needs `randoms_table`, the truth table in that database")
        if randoms_table and randoms_db is None:
            raise InputError("`randoms_table` needs `randoms_db`, the database holding it (may be empty: libpq defaults)")
        for name, value in (("db_connections", db_connections), ("db_timeout", db_timeout)):
            if value is not None and randoms_db is None:
                raise InputError(f"`{name}` applies to a truth table in a database only: give `randoms_db` "
                                 "and `randoms_table`, or drop it")
        if not (self.db_timeout > 0 and math.isfinite(self.db_timeout)):
            raise InputError(f"`db_timeout` {db_timeout!r}: must be a positive number of seconds")
        if self.db_connections < 1:
            raise InputError(f"`db_connections` is {db_connections}: at least one rank must connect")

    def brick_list(self, stdin=None):
        """The sorted, unique, checked brick names to derive (reads the list file, or
        standard input for ``-``: call it on one rank)."""
        if is_brick_list_file(self.bricks):
            return read_brick_list(self.bricks, stdin)
        return sorted(brick_names(self.bricks))

    @property
    def fingerprint_kind(self):
        """How brick input fingerprints are made: ``stat`` (path, size, mtime) or
        ``content`` (and a CRC-32 of every file: `verify_inputs`)."""
        return "content" if self.verify_inputs else "stat"

    @property
    def filters(self):
        """Keyword arguments of ``create_dataset`` for the chosen compression ({} for none)."""
        if self.compression == "none":
            return {}
        found = {"compression": self.compression, "shuffle": self.shuffle}
        if self.compression == "gzip":
            found["compression_opts"] = self.compression_level
        return found

    @property
    def compression_text(self):
        """The compression as recorded in the file: ``none``, ``gzip-1+shuffle``, ``lzf``..."""
        if self.compression == "none":
            return "none"
        text = f"gzip-{self.compression_level}" if self.compression == "gzip" else self.compression
        return text + ("+shuffle" if self.shuffle else "")

    def recorded_inputs(self):
        """What must match for `resume` to continue a file (inputs and options); a database
        is recorded by its connection string without any password, and its table."""
        found = {
            "data_dir": self.data_dir, "randoms": self.randoms, "dr_dir": self.dr_dir,
            "survey_bricks": self.survey_bricks, "bricks": self.bricks, "objtype": self.objtype,
            "expect_rsdirs": self.expect_rsdirs, "match_radius_arcsec": self.match_radius,
            "keep_all_apflux": self.keep_all_apflux, "compression": self.compression_text,
        }
        if self.randoms_db is not None:
            from ..production.truthdb import redact

            found.update(randoms=None, randoms_db=redact(self.randoms_db), randoms_table=self.randoms_table)
        return found

    def check(self):
        """Why the job cannot run with these options and this output, or None.

        Checked on rank 0 before any file is created or removed: numeric options in range,
        the output not a directory, not one of the inputs (by resolved path and by inode)
        nor inside the production's catalog trees, and its directory writable.
        """
        numbers = [
            ("match_radius", self.match_radius, self.match_radius > 0 and math.isfinite(self.match_radius),
             "must be a positive number of arcsec"),
            ("max_memory_mb", self.max_memory_mb, self.max_memory_mb > 0, "must be positive"),
            ("chunk_kb", self.chunk_kb, self.chunk_kb >= 0, "must be 0 (contiguous) or positive"),
            ("compression_level", self.compression_level,
             self.compression_level is None or 1 <= self.compression_level <= 9, "must be 1 to 9"),
            ("max_call_bytes", self.max_call_bytes, self.max_call_bytes >= 1, "must be positive"),
        ]
        if self.expect_rsdirs is not None:
            numbers.append(("expect_rsdirs", self.expect_rsdirs, self.expect_rsdirs >= 1, "must be at least 1"))
        if self.alignment:
            numbers.append(("alignment", self.alignment, min(self.alignment) >= 1, "must be positive"))
        for name, value, valid, rule in numbers:
            if not valid:
                return f"`{name}` {value!r}: {rule}"
        if self.compression != "none" and self.chunk_kb == 0:
            return (f"`compression` {self.compression} needs a chunked layout: HDF5 filters work on chunks; "
                    "drop `chunk_kb` 0 or the compression")
        chosen = [name for name in ("resume", "overwrite", "update") if getattr(self, name)]
        if len(chosen) > 1:
            return (f"{' and '.join(f'`{name}`' for name in chosen)} exclude each other: complete the file, "
                    "start it again, or grow it")
        return self._check_inputs() or self._check_output()

    def _check_inputs(self):
        """The inputs read whole by rank 0 (not per brick): directories that are directories,
        files that are regular files (a FIFO or device is refused without being opened, so
        nothing blocks)."""
        for name, path, what in (("data_dir", self.data_dir, "data directory"), ("dr_dir", self.dr_dir, "DR directory")):
            if not os.path.exists(path):
                return f"{path}: no such {what} (`{name}`)"
            if not os.path.isdir(path):
                return f"{path}: is not a directory (`{name}`, the {what})"
        files = [(self.survey_bricks, "survey-bricks file")]
        if self.randoms_db is None:
            files.append((self.randoms, "truth table file"))
        if is_brick_list_file(self.bricks) and self.bricks != "-":
            files.append((self.bricks, "brick-list file"))
        for path, what in files:
            try:
                check_regular_file(path, what)
            except InputError as err:
                return str(err)
        return None

    def _check_output(self):
        output = self.output
        if os.path.isdir(output):
            return f"{output}: is a directory; give the path of the HDF5 file to write"
        inputs = [self.randoms, self.survey_bricks] + ([self.bricks] if is_brick_list_file(self.bricks) else [])
        for path in inputs:
            if _same_file(path, output):
                return f"{output}: is an input of the job ({path}); choose another output name"
        real = os.path.realpath(output)
        trees = [os.path.join(self.data_dir, "obiwan"), os.path.join(self.data_dir, "tractor"),
                 os.path.join(self.dr_dir, "tractor")]
        for tree in trees:
            if real.startswith(os.path.realpath(tree) + os.sep):
                return f"{output}: lies inside the production's catalogs ({tree}); choose another place"
        if os.path.lexists(output) and not (self.resume or self.overwrite or self.update):
            return (f"{output}: exists; use `overwrite` to replace it, `resume` to complete it or "
                    "`update` to add new and changed bricks")
        directory = os.path.dirname(output) or "."
        if not os.path.isdir(directory):
            return f"{directory}: output directory does not exist"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"{directory}: output directory is not writable"
        return None


def _brick_source(bricks, data_dir):
    """The `bricks` of a job as it is recorded (and compared on `resume`): the absolute path
    of a list file, ``-``, or the names given, sorted and comma-joined; names are checked
    when the list is read (`DeriveOptions.brick_list`), on rank 0."""
    if bricks is None:
        return os.path.abspath(os.path.join(data_dir, "bricks.txt"))
    if isinstance(bricks, os.PathLike):
        return os.path.abspath(bricks)
    if isinstance(bricks, str):
        if bricks == "-":
            return bricks
        if is_brick_list_file(bricks):
            return os.path.abspath(bricks)
        bricks = bricks.replace(",", " ").split()
    return ",".join(sorted({str(name).strip() for name in bricks}))


def _same_file(path, other):
    """Whether two paths name the same file (resolved path, or same device and inode)."""
    if os.path.realpath(path) == os.path.realpath(other):
        return True
    try:
        first, second = os.stat(path), os.stat(other)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)
