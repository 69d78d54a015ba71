"""The options of a derive job: one frozen record whose fields are the flags of
``obiwan-h5 derive`` (``--max-memory`` is `max_memory`), checked before anything is
created or removed.

The command line builds it by name from its arguments (`cli.options.options_from_args`),
its defaults are the defaults the flags show, and the file records its inputs from these
fields (`DeriveOptions.recorded_inputs`). What is wrong in the options themselves (values
that cannot go together) is refused when they are made; `DeriveOptions.check`, on rank 0
before the job creates anything, refuses numbers out of range, missing inputs and an
output that must not be written.
"""

import dataclasses
import math
import os

from ..core.deprecation import renamed_keywords
from ..errors import InputError
from ..listfiles import brick_names, is_brick_list_file, read_brick_list
from ..outputs import check_output, check_regular_file
from ..production.truthdb import DEFAULT_TIMEOUT_S

__all__ = ["COMPRESSIONS", "DEFAULT_COMPRESSION", "DEFAULT_DB_CONNECTIONS", "DEFAULT_GZIP_LEVEL", "MAX_CALL_BYTES",
           "DeriveOptions"]

# filters every h5py can read without plugins; "none" writes the data as it is
COMPRESSIONS = ("none", "gzip", "lzf")
# chosen by measurement (docs/performance.md, "Compression"): compressing makes derive and
# column reads several times slower; level 1 shrinks within 4 % of levels 4 and 6 at a
# fraction of their derive time
DEFAULT_COMPRESSION = "none"
DEFAULT_GZIP_LEVEL = 1
# ranks that connect to a truth database (`randoms_db`) when not told
DEFAULT_DB_CONNECTIONS = 4
# the largest buffer of one write call: well below MPI-IO's 2 GiB limit per call
MAX_CALL_BYTES = 1 << 30
# the options a file records (its ``inputs`` attribute), in this order, which `resume` and
# `update` compare; a file names `match_radius` as it always has
RECORDED = ("data_dir", "randoms", "dr_dir", "survey_bricks", "bricks", "objtype", "expect_rsdirs", "match_radius",
            "keep_all_apflux", "compression")
RECORDED_NAMES = {"match_radius": "match_radius_arcsec"}


@dataclasses.dataclass(frozen=True)
class DeriveOptions:
    """Everything that determines the job; inputs default to the simulator's names.

    Each field is the flag of ``obiwan-h5 derive`` of the same name. The former keywords
    ``max_memory_mb`` (now `max_memory`) and ``alignment`` (now `align`) still work, with
    a `DeprecationWarning`.

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
    keep_all_apflux, resume, overwrite, update, verify_inputs : bool
        Keep every apflux column; complete a file, replace it, or grow it; fingerprint
        the inputs by content.
    max_memory : float
        Memory per rank for rows between collective writes, in MB.
    chunk_kb : int
        HDF5 chunk size per column (0: contiguous).
    mpi_info : dict or sequence of str, optional
        MPI-IO hints: ``{key: value}``, or ``"KEY=VALUE"`` strings as the flag takes them.
    align : int or (int, int)
        Align datasets of at least `align` bytes to `align` bytes (0: no alignment); a pair
        gives the HDF5 alignment threshold and interval apart.
    max_call_bytes : int
        Largest buffer of one write call.
    randoms_db : str, optional
        libpq connection string (or ``postgresql://`` URI; empty for libpq's defaults) of the
        PostgreSQL database holding the truth table; then `randoms` is not used.
    randoms_table : str, optional
        The truth table in `randoms_db` (``TABLE`` or ``SCHEMA.TABLE``).
    db_connections : int, optional
        At most this many ranks connect to `randoms_db` (default `DEFAULT_DB_CONNECTIONS`,
        filled in when made); the others get their rows over MPI. Only with `randoms_db`.
    compression : {"none", "gzip", "lzf"}
        HDF5 filter of the randoms and summary columns (needs chunks: `chunk_kb` > 0).
    compression_level : int, optional
        gzip level 1-9 (default `DEFAULT_GZIP_LEVEL`: `gzip_level`); only with gzip.
    shuffle : bool
        Byte-shuffle filter before the compression (ignored without compression).
    db_timeout : float, optional
        The longest wait for `randoms_db`, in seconds: to connect and for each reply
        (default `production.truthdb.DEFAULT_TIMEOUT_S`, filled in when made). Only with
        `randoms_db`.

    Raises
    ------
    InputError
        Options that cannot go together, an unknown compression, a database option
        without a database, a bad `mpi_info` item.
    """

    data_dir: str
    output: str
    randoms: str = None
    dr_dir: str = None
    survey_bricks: str = None
    bricks: object = None
    objtype: str = "elg"
    expect_rsdirs: int = None
    match_radius: float = 1.0
    keep_all_apflux: bool = False
    resume: bool = False
    overwrite: bool = False
    max_memory: float = 256
    chunk_kb: int = 4096
    mpi_info: object = None
    align: object = 0
    max_call_bytes: int = MAX_CALL_BYTES
    update: bool = False
    verify_inputs: bool = False
    randoms_db: str = None
    randoms_table: str = None
    db_connections: int = None
    compression: str = DEFAULT_COMPRESSION
    compression_level: int = None
    shuffle: bool = True
    db_timeout: float = None

    def __post_init__(self):
        data_dir = self.data_dir
        normal = dict(
            data_dir=os.path.abspath(data_dir), output=os.path.abspath(self.output),
            randoms=os.path.abspath(self.randoms or os.path.join(data_dir, "randoms.fits")),
            dr_dir=os.path.abspath(self.dr_dir or os.path.join(data_dir, "dr")),
            survey_bricks=os.path.abspath(self.survey_bricks or os.path.join(data_dir, "survey-bricks.fits")),
            bricks=_brick_source(self.bricks, data_dir), match_radius=float(self.match_radius),
            mpi_info=_hints(self.mpi_info), shuffle=bool(self.shuffle),
            compression="none" if self.compression in (None, False) else str(self.compression),
        )
        for name, value in normal.items():
            object.__setattr__(self, name, value)
        self._check_together()
        if self.randoms_db is not None:  # without a database they stay None: they mean nothing
            timeout, connections = self.db_timeout, self.db_connections
            object.__setattr__(self, "db_timeout", DEFAULT_TIMEOUT_S if timeout is None else float(timeout))
            object.__setattr__(self, "db_connections",
                               DEFAULT_DB_CONNECTIONS if connections is None else int(connections))
            if not (self.db_timeout > 0 and math.isfinite(self.db_timeout)):
                raise InputError(f"`db_timeout` {timeout!r}: must be a positive number of seconds")
            if self.db_connections < 1:
                raise InputError(f"`db_connections` is {connections}: at least one rank must connect")

    def _check_together(self):
        """Refuse options that cannot go together (before the defaults fill them in)."""
        if self.compression not in COMPRESSIONS:
            raise InputError(f"`compression` {self.compression!r}: expected one of {', '.join(COMPRESSIONS)}")
        if self.compression_level is not None and self.compression != "gzip":
            raise InputError("`compression_level` applies to gzip only")
        if self.randoms_db is not None and not self.randoms_table:
            raise InputError("`randoms_db` needs `randoms_table`, the truth table in that database")
        if self.randoms_table and self.randoms_db is None:
            raise InputError("`randoms_table` needs `randoms_db`, the database holding it (may be empty: libpq defaults)")
        for name in ("db_connections", "db_timeout"):
            if getattr(self, name) is not None and self.randoms_db is None:
                raise InputError(f"`{name}` applies to a truth table in a database only: give `randoms_db` "
                                 "and `randoms_table`, or drop it")

    def brick_list(self, stdin=None):
        """The sorted, unique, checked brick names to derive (reads the list file, or
        standard input for ``-``: call it on one rank)."""
        if is_brick_list_file(self.bricks):
            return read_brick_list(self.bricks, stdin)
        return sorted(brick_names(self.bricks))

    @property
    def alignment(self):
        """HDF5's alignment ``(threshold, interval)`` in bytes, or None (`align`)."""
        if not self.align:
            return None
        return tuple(self.align) if isinstance(self.align, (tuple, list)) else (self.align, self.align)

    @property
    def writer_options(self):
        """Keyword arguments of `writer.DerivedWriter` that these options set."""
        return dict(mpi_info=self.mpi_info, alignment=self.alignment, max_call_bytes=self.max_call_bytes)

    @property
    def fingerprint_kind(self):
        """How brick input fingerprints are made: ``stat`` (path, size, mtime) or
        ``content`` (and a CRC-32 of every file: `verify_inputs`)."""
        return "content" if self.verify_inputs else "stat"

    @property
    def gzip_level(self):
        """The gzip level written: `compression_level`, else `DEFAULT_GZIP_LEVEL` (gzip only)."""
        if self.compression != "gzip":
            return None
        return DEFAULT_GZIP_LEVEL if self.compression_level is None else self.compression_level

    @property
    def filters(self):
        """Keyword arguments of ``create_dataset`` for the chosen compression ({} for none)."""
        if self.compression == "none":
            return {}
        found = {"compression": self.compression, "shuffle": self.shuffle}
        if self.compression == "gzip":
            found["compression_opts"] = self.gzip_level
        return found

    @property
    def compression_text(self):
        """The compression as recorded in the file: ``none``, ``gzip-1+shuffle``, ``lzf``..."""
        if self.compression == "none":
            return "none"
        text = f"gzip-{self.gzip_level}" if self.compression == "gzip" else self.compression
        return text + ("+shuffle" if self.shuffle else "")

    def recorded_inputs(self):
        """What must match for `resume` to continue a file (inputs and options, `RECORDED`);
        a database is recorded by its connection string without any password, and its
        table."""
        found = {RECORDED_NAMES.get(name, name): getattr(self, name) for name in RECORDED}
        found["compression"] = self.compression_text
        if self.randoms_db is not None:
            from ..production.truthdb import redact

            found.update(randoms=None, randoms_db=redact(self.randoms_db), randoms_table=self.randoms_table)
        return found

    def check(self):
        """Refuse to run the job with these options and this output.

        Checked on rank 0 before any file is created or removed: numeric options in range,
        the inputs read whole present and regular files, the output not a directory, not
        one of the inputs (by resolved path and by inode) nor inside the production's
        catalog trees, and its directory writable.

        Raises
        ------
        InputError
        """
        self._check_numbers()
        if self.compression != "none" and self.chunk_kb == 0:
            raise InputError(f"`compression` {self.compression} needs a chunked layout: HDF5 filters work on chunks; "
                             "drop `chunk_kb` 0 or the compression")
        chosen = [name for name in ("resume", "overwrite", "update") if getattr(self, name)]
        if len(chosen) > 1:
            raise InputError(f"{' and '.join(f'`{name}`' for name in chosen)} exclude each other: complete the file, "
                             "start it again, or grow it")
        self._check_inputs()
        self._check_output()

    def _check_numbers(self):
        numbers = [
            ("match_radius", self.match_radius, self.match_radius > 0 and math.isfinite(self.match_radius),
             "must be a positive number of arcsec"),
            ("max_memory", self.max_memory, self.max_memory > 0, "must be positive"),
            ("chunk_kb", self.chunk_kb, self.chunk_kb >= 0, "must be 0 (contiguous) or positive"),
            ("compression_level", self.compression_level,
             self.compression_level is None or 1 <= self.compression_level <= 9, "must be 1 to 9"),
            ("max_call_bytes", self.max_call_bytes, self.max_call_bytes >= 1, "must be positive"),
            ("align", self.align, self.alignment is None or min(self.alignment) >= 1, "must be positive"),
        ]
        if self.expect_rsdirs is not None:
            numbers.append(("expect_rsdirs", self.expect_rsdirs, self.expect_rsdirs >= 1, "must be at least 1"))
        for name, value, valid, rule in numbers:
            if not valid:
                raise InputError(f"`{name}` {value!r}: {rule}")

    def _check_inputs(self):
        """The inputs read whole by rank 0 (not per brick): directories that are directories,
        files that are regular files (a FIFO or device is refused without being opened, so
        nothing blocks)."""
        for name, path, what in (("data_dir", self.data_dir, "data directory"), ("dr_dir", self.dr_dir, "DR directory")):
            if not os.path.exists(path):
                raise InputError(f"{path}: no such {what} (`{name}`)")
            if not os.path.isdir(path):
                raise InputError(f"{path}: is not a directory (`{name}`, the {what})")
        files = [(self.survey_bricks, "survey-bricks file")]
        if self.randoms_db is None:
            files.append((self.randoms, "truth table file"))
        if is_brick_list_file(self.bricks) and self.bricks != "-":
            files.append((self.bricks, "brick-list file"))
        for path, what in files:
            check_regular_file(path, what)

    def _check_output(self):
        """The output as every command's (`outputs.check_output`), and never inside the
        production's catalog trees."""
        real = os.path.realpath(self.output)
        trees = [os.path.join(self.data_dir, "obiwan"), os.path.join(self.data_dir, "tractor"),
                 os.path.join(self.dr_dir, "tractor")]
        for tree in trees:
            if real.startswith(os.path.realpath(tree) + os.sep):
                raise InputError(f"{self.output}: lies inside the production's catalogs ({tree}); choose another place")
        inputs = [self.randoms, self.survey_bricks] + ([self.bricks] if is_brick_list_file(self.bricks) else [])
        check_output(self.output, self.resume or self.overwrite or self.update, inputs=inputs, inputs_of="the job",
                     exists_advice="use `overwrite` to replace it, `resume` to complete it or `update` to add new "
                                   "and changed bricks")


# the deprecation warning names the class, as users call it
DeriveOptions.__init__.__name__ = DeriveOptions.__name__
DeriveOptions.__init__ = renamed_keywords(max_memory_mb="max_memory", alignment="align")(DeriveOptions.__init__)


def _hints(mpi_info):
    """MPI-IO hints as a dict, from a dict or ``KEY=VALUE`` strings."""
    if isinstance(mpi_info, dict):
        return dict(mpi_info)
    hints = {}
    for item in mpi_info or ():
        key, sep, value = str(item).partition("=")
        if not sep:
            raise InputError(f"`mpi_info` {item!r}: expected KEY=VALUE")
        hints[key] = value
    return hints


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
