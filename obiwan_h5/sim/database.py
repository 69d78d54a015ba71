"""Synthetic randoms in PostgreSQL, as the original productions kept their truth.

`load_randoms_table` copies a ``randoms.fits`` (the simulator's, or any FITS truth table)
into a new table, so that ``derive --randoms-db`` can be tried without NERSC's database.
`PgServer` is a throw-away server for the demo and the tests: ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/*/bin`` in a new temporary directory, on a Unix socket only.
"""

import glob
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..errors import InputError
from ..production.inputs import FitsTable
from ..production.truthdb import first_error_line, import_psycopg, redact, split_table_name

__all__ = ["PgServer", "load_randoms_table", "server_bindir"]

PG_TYPES = {"i2": "int2", "i4": "int4", "i8": "int8", "f4": "float4", "f8": "float8", "b1": "bool"}
TIMEOUT_S = 60


def load_randoms_table(conninfo, table, randoms_path, replace=False, grant_to=()):
    """Create `table` with the columns of the FITS table `randoms_path` and copy its rows in.

    Parameters
    ----------
    conninfo : str
        libpq connection string or URI (password from ``~/.pgpass`` or ``PGPASSWORD``).
    table : str
        ``TABLE`` or ``SCHEMA.TABLE`` (the schema is created if needed); ``id`` is its primary key.
    randoms_path : str
        FITS table with an ``id`` column; scalar integer, float, bool and string columns.
    replace : bool
        Drop an existing table of that name first (otherwise it is refused).
    grant_to : iterable of str
        Roles given read access.

    Returns
    -------
    int
        Rows loaded.
    """
    psycopg = import_psycopg()
    sql = psycopg.sql
    parts = split_table_name(table)
    ident = sql.Identifier(*parts)
    source = FitsTable(randoms_path)
    source.require(["id"])
    rows = source.read(list(source.schema))
    columns = []
    for name, (dtype, shape) in source.schema.items():
        kind = "text" if dtype.kind == "S" else PG_TYPES.get(dtype.str.lstrip("<>|="))
        if kind is None or shape:
            raise InputError(f"{randoms_path}: column {name!r} ({dtype}{shape}) has no PostgreSQL counterpart here")
        key = sql.SQL(" PRIMARY KEY") if name == "id" else sql.SQL("")
        columns.append(sql.SQL("{} {}{}").format(sql.Identifier(name), sql.SQL(kind), key))
    label = f"postgresql:{table}"
    try:
        with psycopg.connect(conninfo, autocommit=False, connect_timeout=10) as conn:
            if len(parts) == 2:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(parts[0])))
            qualified = ident.as_string(conn)
            if conn.execute("SELECT to_regclass(%s) IS NOT NULL", [qualified]).fetchone()[0]:
                if not replace:
                    raise InputError(f"{label}: exists in database {redact(conninfo)}; use `overwrite` to replace it")
                conn.execute(sql.SQL("DROP TABLE {}").format(ident))
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, sql.SQL(", ").join(columns)))
            names = list(source.schema)
            with conn.cursor() as cursor, cursor.copy(sql.SQL("COPY {} FROM STDIN").format(ident)) as copy:
                for index in range(len(rows[names[0]]) if names else 0):
                    copy.write_row([_plain(rows[name][index]) for name in names])
            for role in grant_to:
                if len(parts) == 2:
                    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                        sql.Identifier(parts[0]), sql.Identifier(role)))
                conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident, sql.Identifier(role)))
    except psycopg.Error as err:
        raise InputError(f"{label}: {first_error_line(err, conninfo)} (database {redact(conninfo)})") from None
    return len(rows["id"])


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


def server_bindir():
    """The directory of the PostgreSQL server binaries (``PG_BINDIR``, else the newest
    ``/usr/lib/postgresql/<version>/bin``), or None."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    found = [path for path in glob.glob("/usr/lib/postgresql/*/bin/initdb") if path.split("/")[-3].isdigit()]
    found.sort(key=lambda path: int(path.split("/")[-3]))
    return os.path.dirname(found[-1]) if found else None


class PgServer:
    """A throw-away server: ``with PgServer() as server:`` starts it, then stops it and
    removes its directory. Run as root, the server runs as the ``postgres`` user (initdb
    refuses root). The superuser ``postgres`` connects without a password; each role of
    `password_roles` (name → password) needs its password. Every start and stop has a timeout.
    """

    def __init__(self, password_roles=None):
        self.base = None
        self.password_roles = dict(password_roles or {})

    @property
    def sockdir(self):
        """The directory of the server's Unix socket (the ``host`` of `conninfo`)."""
        return os.path.join(self.base, "sock")

    @property
    def datadir(self):
        """The server's data directory (initdb's ``-D``)."""
        return os.path.join(self.base, "data")

    def conninfo(self, user="postgres", dbname="postgres", **extra):
        """A key=value connection string to this server."""
        parts = {"host": self.sockdir, "dbname": dbname, "user": user, **extra}
        return " ".join(f"{key}={value}" for key, value in parts.items())

    def _cmd(self, *args):
        bindir = server_bindir()
        if bindir is None:
            raise InputError("no PostgreSQL server under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
        command = [os.path.join(bindir, args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, timeout=TIMEOUT_S, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd=self.base, text=True)
        if result.returncode:
            raise InputError(f"{args[0]} failed: {result.stdout.strip().splitlines()[-1:]}")

    def start(self):
        """Create, configure and start a new server in a fresh directory; return self.

        The roles of `password_roles` are created with their passwords; on any failure the
        server is stopped and its directory removed before the error propagates.
        """
        # a short path (Unix socket names are limited to ~100 bytes), reachable by postgres
        self.base = tempfile.mkdtemp(prefix="obiwan-pg-", dir="/tmp")
        os.makedirs(self.sockdir)
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam("postgres")
            for path in (self.base, self.sockdir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        try:
            self._cmd("initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")
            with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as hba:
                for role in self.password_roles:
                    hba.write(f"local all {role} scram-sha-256\n")
                hba.write("local all all trust\n")
            self.unpause()
            psycopg = import_psycopg()
            with psycopg.connect(self.conninfo(), autocommit=True) as conn:
                for role, password in self.password_roles.items():
                    conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        psycopg.sql.Identifier(role), psycopg.sql.Literal(password)))
        except BaseException:
            self.stop()
            raise
        return self

    def sql(self, *statements):
        """Run statements as the superuser."""
        psycopg = import_psycopg()
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def pause(self):
        """Stop the server, keeping its data (`unpause` starts it again)."""
        self._cmd("pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "-t", str(TIMEOUT_S), "stop")

    def unpause(self):
        """Start the server (again) on its data directory, listening on its socket only."""
        self._cmd("pg_ctl", "-D", self.datadir, "-l", os.path.join(self.base, "server.log"), "-w",
                  "-t", str(TIMEOUT_S), "-o", f"-k {self.sockdir} -c listen_addresses='' -c fsync=off", "start")

    def stop(self):
        """Stop the server if it runs and remove its directory; a second call does nothing."""
        if self.base is None:
            return
        try:
            if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                self.pause()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
