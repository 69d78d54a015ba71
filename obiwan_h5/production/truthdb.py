"""The randoms truth table read straight from a PostgreSQL table (docs/derive.md).

`DbTruthTable` has the interface of `truth.TruthTable` (``path``, ``columns``, ``schema``,
``rows_of``, ``lookup``, ``len``, ``save_index``), so the derive job and Python callers use
either. It needs psycopg 3 (``pip install obiwan_h5[postgres]``).

What is read, and how:

- the catalogue once (``pg_attribute``): the columns and their types, and the longest value
  of each text column (one scan of the table);
- every ``id`` once, sorted by the server, through a binary ``COPY``: the index behind
  `rows_of` (the row number of an id is its position in id order), with a hash of each row
  that makes the table's `fingerprint`;
- the rows of the ids asked for by `lookup`: ``SELECT ... WHERE id = ANY(%s)`` with the ids as
  one ``bigint[]`` parameter per batch of `BATCH_IDS` ids, results in binary; never one query
  per id.

Types (from the catalogue): ``int2``/``int4``/``int8`` → int16/int32/int64; ``float4``/``float8``
→ float32/float64; ``bool`` → bool; ``text``/``varchar``/``bpchar`` → fixed-width bytes ``S<n>``
with ``n`` the longest value in the table in bytes (at least 1). Any other type is refused.

NULL values (`NULL_FILL`): floats → NaN; integers → the smallest value of the dtype
(-32768, -2147483648, -9223372036854775808), a value the production never uses for a
real quantity; bool → False; text → ``b""``. Rows whose ``id`` is NULL cannot be looked up
and are ignored.

Connections: credentials come only from libpq (the connection string, ``~/.pgpass``,
``PGPASSWORD``, ``PGHOST``, ...); `redact` removes any password from what is logged, stored
or shown in an error. Each connection autocommits. Every wait for the server has a deadline
of `timeout_s` (`DEFAULT_TIMEOUT_S`): to connect (libpq's ``connect_timeout``), and for each
reply, on the client side (`_Deadline`), because a server that stalls (stopped, swapping, a
frozen network) never fires its own statement timeout; the statement timeout is set too.
A lost connection is retried a few times with back-off on a new connection; a deadline
that passed is not (the server does not answer). Once the retries of a lookup fail, the
table is *gone*: every later lookup fails at once with the same message, so that a job
whose server died does not wait for it again in every write round. Failures (unreachable
server, authentication, missing table or ``id`` column, no reply in time) are `InputError`
with one line and no password.
"""

import hashlib
import logging
import os
import signal
import socket
import threading
import time

import numpy as np

from ..core.schema import column_name_problem
from ..errors import InputError
from .truth import build_index, rows_in_index

__all__ = ["BATCH_IDS", "DEFAULT_TIMEOUT_S", "NULL_FILL", "DbTruthTable", "first_error_line", "import_psycopg", "redact",
           "split_table_name"]

log = logging.getLogger("obiwan_h5.truthdb")

BATCH_IDS = 50_000
# the longest wait for the server: to connect, and for each reply (or each piece of a COPY)
DEFAULT_TIMEOUT_S = 60
INTEGER_TYPES = {"int2": np.int16, "int4": np.int32, "int8": np.int64}
FLOAT_TYPES = {"float4": np.float32, "float8": np.float64}
TEXT_TYPES = ("text", "varchar", "bpchar")
# what a NULL becomes, by numpy kind
NULL_FILL = {"f": np.nan, "b": False, "S": b""}
NULL_FILL.update({np.dtype(t).str: np.iinfo(t).min for t in INTEGER_TYPES.values()})
_UNPARSED = "<connection string not shown: it could not be parsed>"


def import_psycopg():
    """The psycopg module, or an `InputError` saying how to install it."""
    return _psycopg()


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise InputError("reading the truth from PostgreSQL (`randoms_db`) needs psycopg 3: "
                         "pip install 'obiwan_h5[postgres]'") from None
    return psycopg


def redact(conninfo):
    """`conninfo` (a libpq key=value string or a ``postgresql://`` URI) without any password,
    as a key=value string; a placeholder if it cannot be parsed (it is then never shown)."""
    conninfo_module = _psycopg().conninfo
    try:
        params = conninfo_module.conninfo_to_dict(conninfo or "")
    except Exception:  # noqa: BLE001 — a malformed string is never echoed, whatever the error
        return _UNPARSED
    params.pop("password", None)
    return conninfo_module.make_conninfo("", **params) or "(libpq defaults)"


def _password(conninfo):
    try:
        return _psycopg().conninfo.conninfo_to_dict(conninfo or "").get("password") or None
    except Exception:  # noqa: BLE001
        return None


def first_error_line(err, conninfo):
    """The first line of a database error, with the password of `conninfo` (if any) never shown."""
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    password = _password(conninfo)
    return text.replace(password, "***") if password else text


def split_table_name(table):
    """``schema.table`` or ``table`` as identifier parts (never interpolated into SQL)."""
    parts = str(table or "").split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise InputError(f"`randoms_table` {table!r}: expected TABLE or SCHEMA.TABLE")
    return tuple(parts)


def _permanent(err):
    """Whether retrying `err` cannot help (bad credentials, no such database or role)."""
    text = str(err).lower()
    state = getattr(err, "sqlstate", None) or ""
    return state.startswith(("28", "3D", "42")) or any(
        word in text for word in ("authentication failed", "no password supplied", "does not exist",
                                  "permission denied", "password"))


class DbTruthTable:
    """The randoms truth table in a PostgreSQL table, looked up by ``id``.

    Parameters
    ----------
    conninfo : str
        libpq connection string or URI; empty for libpq's defaults (``PGHOST``, ...).
    table : str
        ``TABLE`` or ``SCHEMA.TABLE``, quoted as identifiers.
    index_files : (str, str), optional
        ``.npy`` files of the sorted ids and their rows written by `save_index`, mapped
        instead of reading every id again.
    described : dict, optional
        `description` of the same table from another process: no catalogue query.
    connect : bool
        False: never connect (`lookup` is then unavailable; the job's ranks beyond its
        connection limit get their rows from a rank that connects).
    timeout_s : float
        The longest wait for the server, in seconds: to connect, and for each reply (a
        query that scans the whole table must answer within it too).
    retries, backoff_s : int, float
        Retries of a statement whose connection was lost, on a new connection, after
        ``backoff_s * 2**attempt`` seconds.
    """

    def __init__(self, conninfo, table, index_files=None, described=None, connect=True,
                 timeout_s=DEFAULT_TIMEOUT_S, retries=3, backoff_s=0.5):
        psycopg = _psycopg()
        self._sql = psycopg.sql
        self._operational = psycopg.OperationalError
        # a connection attempt past `timeout_s` (psycopg >= 3.2 says so by its type)
        self._connect_timeout = getattr(psycopg.errors, "ConnectionTimeout", ())
        self._conninfo = conninfo or ""
        self.conninfo = redact(self._conninfo)
        if self.conninfo == _UNPARSED:
            raise InputError("`randoms_db`: the connection string cannot be parsed (not shown, it may hold a password)")
        self.table = str(table)
        self.path = f"postgresql:{self.table}"
        self._ident = self._sql.Identifier(*split_table_name(table))
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_s = backoff_s
        self._conn = None
        self._can_connect = connect
        self._deadline = None
        self._gone = None  # the message of the lookup whose retries failed
        if described is None:
            described = self._run(self._describe)
        self.schema = {name: (np.dtype(dtype), ()) for name, dtype in described["schema"].items()}
        self.columns = list(self.schema)
        self._names = dict(described["names"])
        self._fingerprint = None
        if index_files:
            self._sorted_ids, self._order = (np.load(name, mmap_mode="r") for name in index_files)
        else:
            ids, self._fingerprint = self._run(self._read_ids)
            self._sorted_ids, self._order = build_index(ids, self.path)
        if connect and self._conn is None:
            self._run(lambda conn: None)  # fail now, not in the middle of the job

    # ------------------------------------------------------------------ the interface

    def description(self):
        """What another process needs to skip the catalogue queries (plain, picklable)."""
        return {"schema": {name: dtype.str for name, (dtype, _) in self.schema.items()},
                "names": dict(self._names)}

    def save_index(self, ids_file, rows_file):
        """Write the sorted ids and their rows as ``.npy`` into two open binary files."""
        np.save(ids_file, np.asarray(self._sorted_ids))
        np.save(rows_file, np.asarray(self._order))

    def fingerprint(self, content=True):
        """What identifies the table's contents: ``{"rows": N, "checksum": "<how>:<hex>"}``,
        a hash of every row (with a non-NULL id) in id order, computed by the server in the
        pass that reads the ids (`content` is ignored: a table has no cheaper stat). Only
        on the process that built the index."""
        return dict(self._fingerprint)

    def __len__(self):
        return len(self._sorted_ids)

    def rows_of(self, ids):
        """Row numbers (positions in id order) of `ids`; -1 where the id is absent."""
        return rows_in_index(self._sorted_ids, self._order, ids)

    def lookup(self, ids):
        """Every truth column for `ids`, in the order given; `InputError` naming how many
        ids are missing (nothing is silently dropped)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = self.rows_of(ids)
        if np.any(rows < 0):
            missing = ids[rows < 0]
            raise InputError(
                f"{self.path}: {len(missing)} id(s) not in the randoms truth table (first: {missing[0]})")
        unique_ids, inverse = np.unique(ids, return_inverse=True)
        data = self._run(lambda conn: self._read_rows(conn, unique_ids))
        return {name: values[inverse.reshape(-1)] for name, values in data.items()}

    def close(self):
        """Close the connection to the database (if this process has one)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # ------------------------------------------------------------------ connections

    def _connect(self):
        if not self._can_connect:
            raise InputError(f"{self.path}: this process has no database connection (internal error)")
        psycopg = _psycopg()
        # libpq wants whole seconds, at least 2
        # every float digit in text (the row hash of servers before 14 hashes the row's text)
        return psycopg.connect(self._conninfo, autocommit=True, application_name="obiwan_h5",
                               options=f"-c statement_timeout={int(self.timeout_s * 1000)} -c extra_float_digits=3",
                               connect_timeout=max(2, round(self.timeout_s)))

    def _run(self, work):
        """``work(connection)`` with retries on a new connection; errors become `InputError`.

        Once the retries failed, the server is taken as gone: later calls fail at once.
        """
        if self._gone:
            raise InputError(self._gone)
        for attempt in range(self.retries + 1):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                with _Deadline(self._conn, self.timeout_s) as self._deadline:
                    return work(self._conn)
            except self._operational as err:
                expired = (self._deadline is not None and self._deadline.expired) or isinstance(err, self._connect_timeout)
                self.close()
                if expired:
                    text = (f"{self.path}: no reply within {self.timeout_s:g} s from database {self.conninfo} "
                            "(`db_timeout`: a stalled server, or a query that needs more time)")
                else:
                    text = f"{self.path}: {self._clean(err)} (database {self.conninfo})"
                if expired or attempt == self.retries or _permanent(err):
                    self._gone = text
                    raise InputError(text) from None
                delay = self.backoff_s * 2 ** attempt
                log.warning("%s: %s; retrying in %.1f s", self.path, self._clean(err), delay)
                time.sleep(delay)
            except _psycopg().Error as err:
                self.close()
                raise InputError(f"{self.path}: {self._clean(err)} (database {self.conninfo})") from None
            finally:
                self._deadline = None

    def _alive(self):
        """Tell the deadline that the server sent something (a long COPY is not a stall)."""
        if self._deadline is not None:
            self._deadline.renew()

    def _clean(self, err):
        return first_error_line(err, self._conninfo)

    # ------------------------------------------------------------------ queries

    def _describe(self, conn):
        sql = self._sql
        qualified = self._ident.as_string(conn)
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [qualified]).fetchone()[0]
        if not found:
            raise InputError(f"{self.path}: no such table in database {self.conninfo} (`randoms_table`)")
        columns = conn.execute(
            "SELECT a.attname, t.typname FROM pg_catalog.pg_attribute a"
            " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [qualified]).fetchall()
        problem = column_name_problem([name for name, _ in columns])
        if problem:
            raise InputError(f"{self.path}: {problem} (in the table, or in a view of it)")
        names = {name.lower(): name for name, _ in columns}
        if "id" not in names:
            raise InputError(f"{self.path}: the randoms truth table has no 'id' column")
        schema, texts = {}, []
        for name, typname in columns:
            if typname in INTEGER_TYPES:
                schema[name.lower()] = np.dtype(INTEGER_TYPES[typname])
            elif typname in FLOAT_TYPES:
                schema[name.lower()] = np.dtype(FLOAT_TYPES[typname])
            elif typname == "bool":
                schema[name.lower()] = np.dtype(bool)
            elif typname in TEXT_TYPES:
                texts.append(name)
            else:
                raise InputError(f"{self.path}: column {name!r} has type {typname}, which obiwan_h5 cannot "
                                 "store (integers, floats, booleans and text only)")
            if name.lower() == "id" and typname not in INTEGER_TYPES:
                raise InputError(f"{self.path}: the 'id' column is {typname}, expected integers")
        if texts:
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.SQL("max(octet_length({}))").format(sql.Identifier(n)) for n in texts),
                self._ident)
            widths = conn.execute(query).fetchone()
            for name, width in zip(texts, widths):
                schema[name.lower()] = np.dtype(f"S{max(int(width or 0), 1)}")
        schema = {name.lower(): schema[name.lower()] for name, _ in columns}
        return {"schema": {name: dtype.str for name, dtype in schema.items()}, "names": names}

    def _read_ids(self, conn):
        """Every non-NULL id in increasing order, through a binary COPY (26 bytes a row), and
        the table's fingerprint: a hash of each row, computed by the server in the same pass,
        hashed in id order here (an ``UPDATE`` of any value changes it)."""
        sql = self._sql
        # hash_record_extended (PostgreSQL 14) hashes the row's values; before, its text
        if conn.info.server_version >= 140000:
            how, row_hash = "record", sql.SQL("hash_record_extended(obiwan_h5_row, 0)")
        else:
            how, row_hash = "text", sql.SQL("hashtextextended(obiwan_h5_row::text, 0)")
        query = sql.SQL("COPY (SELECT {id}::int8, {hash} FROM {t} AS obiwan_h5_row WHERE {id} IS NOT NULL "
                        "ORDER BY 1) TO STDOUT (FORMAT BINARY)")
        query = query.format(id=sql.Identifier(self._names["id"]), hash=row_hash, t=self._ident)
        buffer = bytearray()
        with conn.cursor() as cursor, cursor.copy(query) as copy:
            for chunk in copy:
                buffer += chunk
                self._alive()
        header = 11 + 4 + 4
        if len(buffer) < header + 2 or not buffer.startswith(b"PGCOPY\n\xff\r\n\0"):
            raise InputError(f"{self.path}: unexpected reply to the id query")
        header += int.from_bytes(buffer[15:19], "big")
        record = np.dtype([("fields", ">i2"), ("id_length", ">i4"), ("id", ">i8"), ("hash_length", ">i4"),
                           ("hash", ">i8")])
        body = np.frombuffer(buffer, dtype=np.uint8, offset=header, count=len(buffer) - header - 2)
        if len(body) % record.itemsize:
            raise InputError(f"{self.path}: unexpected reply to the id query")
        rows = body.view(record)
        if len(rows) and not (np.all(rows["fields"] == 2) and np.all(rows["id_length"] == 8)
                              and np.all(rows["hash_length"] == 8)):
            raise InputError(f"{self.path}: unexpected reply to the id query")
        digest = hashlib.blake2b(np.ascontiguousarray(rows["hash"]).tobytes(), digest_size=16).hexdigest()
        return rows["id"].astype(np.int64), {"rows": len(rows), "checksum": f"{how}:{digest}"}

    def _read_rows(self, conn, unique_ids):
        """Every column of the rows of `unique_ids` (sorted, distinct), in that order."""
        sql = self._sql
        names = list(self.schema)
        query = sql.SQL("SELECT {cols} FROM {t} WHERE {id} = ANY(%s::int8[])").format(
            cols=sql.SQL(", ").join(sql.Identifier(self._names[name]) for name in names),
            t=self._ident, id=sql.Identifier(self._names["id"]))
        columns = {name: [] for name in names}
        with conn.cursor(binary=True) as cursor:
            for start in range(0, len(unique_ids), BATCH_IDS):
                batch = unique_ids[start:start + BATCH_IDS]
                cursor.execute(query, [batch.tolist()])
                result = cursor.fetchall()
                self._alive()
                for name, values in zip(names, zip(*result) if result else [()] * len(names)):
                    columns[name].append(_to_array(values, self.schema[name][0]))
        data = {name: np.concatenate(parts) if parts else np.zeros(0, self.schema[name][0])
                for name, parts in columns.items()}
        got = data["id"].astype(np.int64)
        order = np.argsort(got, kind="stable")
        if len(got) != len(unique_ids) or not np.array_equal(got[order], unique_ids):
            raise InputError(f"{self.path}: {len(unique_ids)} id(s) asked, {len(got)} row(s) returned; "
                             "the table changed during the job?")
        return {name: values[order] for name, values in data.items()}


class _Deadline:
    """Ends a wait for a server that does not answer: if nothing arrives for `seconds`
    (`renew` says something did), the connection's socket is shut down, which makes the
    blocked call fail at once (`expired` then tells why).

    SIGINT and SIGTERM during the wait do the same (`interrupted`), and the caller raises
    `KeyboardInterrupt` once the call has returned: psycopg, interrupted itself, would first
    ask the server to cancel the query, which a stalled server never answers (10 s lost).
    It works on a duplicate of the socket's descriptor, closed on exit after the watcher
    thread has ended: the shutdown can only ever reach this connection's socket.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, conn, seconds):
        self.seconds = seconds
        self.expired = False
        self.interrupted = None
        self._socket = socket.socket(fileno=os.dup(conn.pgconn.socket))
        self._last = time.monotonic()
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="obiwan-h5-db-deadline", daemon=True)
        self._handlers = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._handlers = {number: signal.signal(number, self._interrupt) for number in self.SIGNALS}
        self._watcher.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._watcher.join()
        self._socket.close()
        for number, handler in self._handlers.items():
            signal.signal(number, handler)
        if self.interrupted is not None:
            raise KeyboardInterrupt(f"signal {signal.Signals(self.interrupted).name}")

    def renew(self):
        self._last = time.monotonic()

    def _interrupt(self, signum, frame):
        self.interrupted = signum
        self._shutdown()

    def _watch(self):
        while not self._done.wait(min(1.0, self.seconds / 4)):
            if time.monotonic() - self._last > self.seconds:
                self.expired = True
                self._shutdown()
                return

    def _shutdown(self):
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the server


def _to_array(values, dtype):
    """Column values from the server (None for NULL) as an array of `dtype`."""
    fill = NULL_FILL[dtype.str] if dtype.kind in "iu" else NULL_FILL[dtype.kind]
    if dtype.kind == "S":
        values = [fill if v is None else (v.encode() if isinstance(v, str) else bytes(v)) for v in values]
    else:
        values = [fill if v is None else v for v in values]
    return np.array(values, dtype=dtype)
