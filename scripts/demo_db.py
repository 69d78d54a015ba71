#!/usr/bin/env python
"""The demo with the truth in PostgreSQL, as the original productions had it (`make demo-db`).

    python scripts/demo_db.py [--dir demo-db] [--ranks 2] [--connections 1] [--randoms-db CONNINFO]

Without `--randoms-db`, starts a throw-away PostgreSQL server (initdb + pg_ctl from
/usr/lib/postgresql/*/bin, Unix socket only, in a temporary directory; stopped and removed
at the end). Then: `obiwan-h5 simulate --randoms-db ... --randoms-table obiwan.randoms_elg`
(production files plus the truth table), `obiwan-h5 derive` from the randoms file, the
same derive from the database on `--ranks` MPI ranks of which `--connections` connect, and
a dataset-by-dataset comparison of the two files (scripts/compare_derived.py).
"""

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = "obiwan.randoms_elg"


def run(command):
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, timeout=1200)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="demo-db", help="working directory (default demo-db)")
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks of the database derive (default 2)")
    parser.add_argument("--connections", type=int, default=1, help="ranks that connect (default 1)")
    parser.add_argument("--randoms-db", help="use this database instead of a throw-away server")
    args = parser.parse_args(argv)

    from obiwan_h5.sim.database import PgServer

    workdir = os.path.abspath(args.dir)
    production = os.path.join(workdir, "production")
    os.makedirs(workdir, exist_ok=True)
    server = None if args.randoms_db is not None else PgServer().start()
    conninfo = args.randoms_db if server is None else server.conninfo()
    cli = [sys.executable, "-m", "obiwan_h5.cli"]
    try:
        run(cli + ["simulate", "-o", production, "--n-bricks", "6", "--rsdirs", "2", "--per-rsdir", "200",
                   "--seed", "1", "--overwrite", "--randoms-db", conninfo, "--randoms-table", TABLE])
        from_file = os.path.join(workdir, "derived-file.h5")
        from_db = os.path.join(workdir, "derived-db.h5")
        run(cli + ["derive", "--data-dir", production, "-o", from_file, "--overwrite"])
        launcher = [shutil.which("mpiexec") or "mpiexec", "-n", str(args.ranks)] if args.ranks > 1 else []
        run(launcher + cli + ["derive", "--data-dir", production, "-o", from_db, "--overwrite",
                              "--randoms-db", conninfo, "--randoms-table", TABLE,
                              "--db-connections", str(args.connections)])
        run([sys.executable, os.path.join(HERE, "compare_derived.py"), "--datasets-only", from_file, from_db])
        print(f"\n{from_db}: truth read from PostgreSQL by {min(args.connections, args.ranks)} of {args.ranks} "
              f"rank(s), identical to {from_file}")
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
