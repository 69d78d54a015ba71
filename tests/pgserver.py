"""The real, throw-away PostgreSQL server of the database tests (no mocks).

The server itself is `obiwan_h5.sim.database.PgServer` (also used by ``make demo-db``);
here: the password-protected role the tests use, why the tests would be skipped, and a
loader for small ad-hoc tables.
"""

import contextlib
import os
import shutil
import signal

from obiwan_h5.sim.database import PgServer, load_randoms_table, server_bindir

PASSWORD_ROLE = "obiwan_reader"
PASSWORD = "s3cret-Pa55word"
PG_TYPES = {"i2": "int2", "i4": "int4", "i8": "int8", "f4": "float4", "f8": "float8", "b1": "bool"}


def why_not_available():
    """Why the database tests cannot run here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'obiwan_h5[postgres]')"
    if server_bindir() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (make setup installs them)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb refuses root"
    return None


def make_server():
    """A server (not started) with the tests' password-protected role."""
    return PgServer(password_roles={PASSWORD_ROLE: PASSWORD})


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


def server_processes(datadir):
    """The pids of the postmaster of the server of `datadir` and of its children (backends,
    background workers)."""
    with open(os.path.join(datadir, "postmaster.pid")) as handle:
        postmaster = int(handle.readline())
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    # the command may hold spaces and parentheses: the parent follows the last ')'
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == postmaster:
                children.append(int(entry))
    return [postmaster] + children


@contextlib.contextmanager
def frozen(datadir):
    """The server of `datadir` stopped with SIGSTOP (a stalled server: connections stay
    open, nothing answers) for the block, then continued."""
    pids = server_processes(datadir)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def load_randoms(conninfo, table, randoms_path):
    """The simulator's ``randoms.fits`` as a table (the production's original truth)."""
    load_randoms_table(conninfo, table, randoms_path, replace=True, grant_to=[PASSWORD_ROLE])


__all__ = ["PASSWORD", "PASSWORD_ROLE", "frozen", "load_randoms", "load_table", "make_server", "server_processes",
           "why_not_available"]
