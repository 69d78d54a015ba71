"""A real, throw-away PostgreSQL server for the database tests (no mocks).

`PgServer` runs ``initdb`` and ``pg_ctl start`` from ``/usr/lib/postgresql/*/bin`` (or
``PG_BINDIR``) in a new temporary directory, listening on a Unix socket only; `stop` shuts
it down and removes the directory. Run as root (CI), the server runs as the ``postgres``
user (initdb refuses root). The superuser ``postgres`` connects without a password; the
role `PASSWORD_ROLE` needs `PASSWORD`. Every start and stop has a timeout.
"""

import glob
import os
import shutil
import subprocess
import tempfile

import numpy as np

PASSWORD_ROLE = "obiwan_reader"
PASSWORD = "s3cret-Pa55word"
TIMEOUT_S = 60


def bindir():
    """The directory of the server binaries, or None."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(path.split("/")[-3]) if path.split("/")[-3].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def why_not_available():
    """Why the database tests cannot run here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'obiwan_h5[postgres]')"
    if bindir() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (make setup installs them)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb refuses root"
    return None


class PgServer:
    """One server in a temporary directory; ``with PgServer() as server:`` starts and stops it."""

    def __init__(self):
        self.base = None
        self.process_user = None

    @property
    def sockdir(self):
        return os.path.join(self.base, "sock")

    @property
    def datadir(self):
        return os.path.join(self.base, "data")

    def conninfo(self, user="postgres", dbname="postgres", **extra):
        """A key=value connection string to this server."""
        parts = {"host": self.sockdir, "dbname": dbname, "user": user, **extra}
        return " ".join(f"{key}={value}" for key, value in parts.items())

    def _cmd(self, *args):
        command = [os.path.join(bindir(), args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, timeout=TIMEOUT_S, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       cwd=self.base)

    def start(self):
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
                hba.write(f"local all {PASSWORD_ROLE} scram-sha-256\nlocal all all trust\n")
            self.unpause()
            self.sql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
        except BaseException:
            self.stop()
            raise
        return self

    def pause(self):
        """Stop the server, keeping its data (`unpause` starts it again)."""
        self._cmd("pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "-t", str(TIMEOUT_S), "stop")

    def unpause(self):
        self._cmd("pg_ctl", "-D", self.datadir, "-l", os.path.join(self.base, "server.log"), "-w",
                  "-t", str(TIMEOUT_S), "-o", f"-k {self.sockdir} -c listen_addresses='' -c fsync=off", "start")

    def stop(self):
        if self.base is None:
            return
        try:
            if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                self._cmd("pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "-t", str(TIMEOUT_S), "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def sql(self, *statements):
        """Run statements as the superuser."""
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


PG_TYPES = {"i2": "int2", "i4": "int4", "i8": "int8", "f4": "float4", "f8": "float8", "b1": "bool"}


def load_table(conninfo, table, rows, grant_to=PASSWORD_ROLE):
    """Create `table` (``name`` or ``schema.name``) with the columns of the structured array
    `rows` (bytes columns become text) and copy the rows in; readable by `grant_to`."""
    import psycopg
    from psycopg import sql

    ident = sql.Identifier(*table.split("."))
    columns = []
    for name in rows.dtype.names:
        dtype = rows.dtype[name]
        kind = "text" if dtype.kind == "S" else PG_TYPES[dtype.str.lstrip("<>|=")]
        columns.append(sql.SQL("{} {}").format(sql.Identifier(name.lower()), sql.SQL(kind)))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if "." in table:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.split(".")[0])))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, sql.SQL(", ").join(columns)))
        with conn.cursor() as cursor, cursor.copy(sql.SQL("COPY {} FROM STDIN").format(ident)) as copy:
            for row in rows:
                copy.write_row([value.decode() if isinstance(value, bytes) else value.item() for value in row])
        if grant_to:
            if "." in table:
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(table.split(".")[0]), sql.Identifier(grant_to)))
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident, sql.Identifier(grant_to)))


def load_randoms(conninfo, table, randoms_path):
    """The simulator's ``randoms.fits`` as a table (the production's original truth)."""
    import fitsio

    rows = fitsio.read(randoms_path)
    load_table(conninfo, table, np.asarray(rows))
