"""Truth straight from PostgreSQL (issue 16), against a real server started by the fixtures.

The server (tests/pgserver.py) runs on a Unix socket in a temporary directory; the
simulator's randoms are loaded into a table, and a derive reading that table must equal a
derive reading the randoms file, dataset by dataset.
"""

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from pgserver import PASSWORD, PASSWORD_ROLE, frozen, load_randoms, load_table

from obiwan_h5.cli import main
from obiwan_h5.errors import InputError
from obiwan_h5.fileformat import DONE, FAILED
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm

pytestmark = pytest.mark.postgres

TABLE = "obiwan.randoms_elg"


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    from obiwan_h5.sim.simulate import simulate

    root = str(tmp_path_factory.mktemp("pgprod") / "production")
    simulate(root, n_bricks=3, rsdirs=2, per_rsdir=100, schema="dr5", seed=16)
    return root


@pytest.fixture(scope="module")
def loaded(pg_server, production):
    load_randoms(pg_server.conninfo(), TABLE, os.path.join(production, "randoms.fits"))
    return pg_server


@pytest.fixture(scope="module")
def from_file(production, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("pgref") / "file.h5")
    assert derive(DeriveOptions(production, output), SerialComm())["failed"] == 0
    return output


def _derive_cli(production, output, conninfo, table=TABLE, *extra):
    return main(["derive", "--data-dir", production, "-o", output, "--randoms-db", conninfo,
                 "--randoms-table", table, *extra])


def _same_datasets(reference, candidate):
    with h5py.File(reference, "r") as ref, h5py.File(candidate, "r") as got:
        for group in ("randoms", "summary", "bricks"):
            assert sorted(ref[group]) == sorted(got[group]), group
            for name in ref[group]:
                a, b = ref[group][name][:], got[group][name][:]
                assert a.dtype == b.dtype and a.shape == b.shape, f"{group}/{name}"
                if a.dtype.kind == "f":
                    assert np.array_equal(a, b, equal_nan=True), f"{group}/{name}"
                else:
                    assert np.array_equal(a, b), f"{group}/{name}"


def _attributes_text(path):
    with h5py.File(path, "r") as f:
        return json.dumps({key: str(value) for key, value in f.attrs.items()})


def test_derive_from_the_database_equals_derive_from_the_file(loaded, production, from_file, tmp_path):
    output = str(tmp_path / "db.h5")
    assert _derive_cli(production, output, loaded.conninfo()) == 0
    _same_datasets(from_file, output)
    with h5py.File(output, "r") as f:
        inputs = json.loads(f.attrs["inputs"])
    assert inputs["randoms_table"] == TABLE
    assert set(inputs["randoms_db"].split()) == set(loaded.conninfo().split())
    assert inputs["randoms"] is None


@pytest.mark.parametrize("how", ["PGPASSWORD", "pgpass", "conninfo"])
def test_password_protected_role_and_the_password_is_never_shown(loaded, production, from_file, tmp_path,
                                                                 monkeypatch, capsys, caplog, how):
    conninfo = loaded.conninfo(user=PASSWORD_ROLE)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    if how == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", PASSWORD)
    elif how == "pgpass":
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"{loaded.sockdir}:*:*:{PASSWORD_ROLE}:{PASSWORD}\n")
        pgpass.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
    else:
        conninfo += f" password={PASSWORD}"
    output = str(tmp_path / "db.h5")
    # the command line is recorded in the file: as a user would type it
    monkeypatch.setattr(sys, "argv", ["obiwan-h5", "derive", "--data-dir", production, "-o", output,
                                      "--randoms-db", conninfo, "--randoms-table", TABLE])
    assert _derive_cli(production, output, conninfo) == 0
    _same_datasets(from_file, output)
    text = _attributes_text(output)
    assert PASSWORD_ROLE in text and PASSWORD not in text
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err + caplog.text


def _refused(production, tmp_path, capsys, conninfo, table=TABLE):
    output = str(tmp_path / "refused.h5")
    assert _derive_cli(production, output, conninfo, table) == 2
    assert not os.path.exists(output)
    assert os.listdir(tmp_path) == []  # not even the shared index
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert PASSWORD not in err
    return err


def test_bad_password_is_one_clear_line(loaded, production, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    err = _refused(production, tmp_path, capsys, loaded.conninfo(user=PASSWORD_ROLE, password=PASSWORD + "x"))
    assert "password authentication failed" in err
    assert PASSWORD + "x" not in err


def test_missing_table_is_refused(loaded, production, tmp_path, capsys):
    err = _refused(production, tmp_path, capsys, loaded.conninfo(), "obiwan.no_such_table")
    assert "no such table" in err and "--randoms-table" in err


def test_table_without_id_is_refused(loaded, production, tmp_path, capsys):
    load_table(loaded.conninfo(), "public.no_id", np.zeros(3, dtype=[("ra", "f8"), ("dec", "f8")]))
    err = _refused(production, tmp_path, capsys, loaded.conninfo(), "no_id")
    assert "no 'id' column" in err


def test_columns_differing_only_in_case_are_refused(loaded, production, tmp_path, capsys):
    """Without the refusal, psql_g silently held the values of "G"."""
    loaded.sql("DROP TABLE IF EXISTS obiwan.cased",
               'CREATE TABLE obiwan.cased AS SELECT *, g + 1 AS "G" FROM obiwan.randoms_elg')
    err = _refused(production, tmp_path, capsys, loaded.conninfo(), "obiwan.cased")
    assert "columns 'g' and 'G' differ only in case" in err


def test_an_empty_table_is_refused_up_front(loaded, production, tmp_path, capsys):
    """As an empty truth file is: not every brick failing, one by one."""
    loaded.sql("DROP TABLE IF EXISTS obiwan.empty",
               "CREATE TABLE obiwan.empty AS SELECT * FROM obiwan.randoms_elg WHERE false")
    err = _refused(production, tmp_path, capsys, loaded.conninfo(), "obiwan.empty")
    assert "postgresql:obiwan.empty: the randoms truth table has no rows" in err


@pytest.mark.slow
def test_unreachable_server_is_refused(production, tmp_path, capsys):
    err = _refused(production, tmp_path, capsys, f"host={tmp_path}/nowhere dbname=postgres")
    assert "nowhere" in err


def test_ids_absent_from_the_table_fail_their_brick(loaded, production, tmp_path, caplog):
    bricks = open(os.path.join(production, "bricks.txt")).read().split()
    import fitsio

    from obiwan_h5.production.layout import Production

    layout = Production(production)
    rsdir = layout.rsdirs(bricks[1])[0]
    added = fitsio.read(layout.ids_added(bricks[1], rsdir))["id"][:3]
    loaded.sql("DROP TABLE IF EXISTS obiwan.partial",
               "CREATE TABLE obiwan.partial AS SELECT * FROM obiwan.randoms_elg WHERE id NOT IN ("
               + ",".join(str(int(i)) for i in added) + ")")
    output = str(tmp_path / "partial.h5")
    assert _derive_cli(production, output, loaded.conninfo(), "obiwan.partial") == 1
    with h5py.File(output, "r") as f:
        status = f["bricks/status"][:]
        messages = [m.decode() for m in f["bricks/message"][:]]
    assert list(status) == [DONE, FAILED, DONE]
    assert "3 id(s) not in the randoms truth table" in messages[1]


def _after_create(monkeypatch, action):
    """Call `action()` once the output file is created: the first write round's truth rows
    are the next thing the job asks the server for."""
    derive_module = importlib.import_module("obiwan_h5.job.derive")
    create = derive_module._open_output

    def create_then_act(*args, **kwargs):
        opened = create(*args, **kwargs)
        action()
        return opened

    monkeypatch.setattr(derive_module, "_open_output", create_then_act)


def _messages(output):
    with h5py.File(output, "r") as f:
        return list(f["bricks/status"][:]), [m.decode() for m in f["bricks/message"][:]]


@pytest.mark.slow
def test_server_gone_mid_job_fails_the_bricks_and_resume_completes(loaded, production, from_file, tmp_path,
                                                                     monkeypatch, caplog):
    """The server stops once the file is created: the first round's retries fail, and the
    later rounds do not try again (each would wait 3.5 s of retries); every brick fails with
    the database's message, exit 1; with the server back, `resume` completes a file equal to
    the file derive."""
    output = str(tmp_path / "gone.h5")
    _after_create(monkeypatch, loaded.pause)
    try:
        # one brick per write round: three rounds
        assert _derive_cli(production, output, loaded.conninfo(), TABLE, "--max-memory", "0.001") == 1
    finally:
        monkeypatch.undo()
        loaded.unpause()
    status, messages = _messages(output)
    assert status == [FAILED] * 3
    assert all(m.startswith("truth rows not read: postgresql:") for m in messages)
    assert caplog.text.count("retrying in") == 3  # the retries of the first round only
    assert _derive_cli(production, output, loaded.conninfo(), TABLE, "--resume") == 0
    _same_datasets(from_file, output)


@pytest.mark.slow
def test_a_stalled_server_fails_the_bricks_at_the_deadline_and_resume_completes(loaded, production, from_file,
                                                                                  tmp_path, monkeypatch, caplog):
    """A server that stops answering (SIGSTOP: its connections stay open) never fires its
    own statement timeout: without the client's deadline the job waited forever. With
    ``--db-timeout 2`` the first round fails after 2 s, the later ones at once."""
    output = str(tmp_path / "stalled.h5")
    stack = contextlib.ExitStack()
    _after_create(monkeypatch, lambda: stack.enter_context(frozen(loaded.datadir)))
    safety = threading.Timer(60, stack.close)  # on a job that hangs, continue the server: fail, never hang
    safety.start()
    start = time.monotonic()
    try:
        assert _derive_cli(production, output, loaded.conninfo(), TABLE, "--max-memory", "0.001",
                           "--db-timeout", "2") == 1
        elapsed = time.monotonic() - start
    finally:
        safety.cancel()
        monkeypatch.undo()
        stack.close()
    assert elapsed < 15, elapsed
    status, _ = _messages(output)
    assert status == [FAILED] * 3
    assert caplog.text.count("no reply within 2 s from database") == 3  # one per brick
    assert _derive_cli(production, output, loaded.conninfo(), TABLE, "--resume") == 0
    _same_datasets(from_file, output)


@pytest.mark.slow
def test_sigterm_ends_a_job_waiting_for_a_stalled_server_at_once(loaded, production, tmp_path, monkeypatch, capsys):
    """psycopg, interrupted while it waits, asks the stalled server to cancel the query and
    waits 10 s for it; the job's own handling ends it at once, with status 130."""
    output = str(tmp_path / "interrupted.h5")
    stack = contextlib.ExitStack()
    signalled = []

    def freeze_and_signal():
        stack.enter_context(frozen(loaded.datadir))
        timer = threading.Timer(1.0, lambda: (signalled.append(time.monotonic()), os.kill(os.getpid(), signal.SIGTERM)))
        stack.callback(timer.cancel)
        timer.start()

    _after_create(monkeypatch, freeze_and_signal)
    try:
        assert _derive_cli(production, output, loaded.conninfo(), TABLE, "--max-memory", "0.001",
                           "--db-timeout", "30") == 130
        ended = time.monotonic()
    finally:
        monkeypatch.undo()
        stack.close()
    assert signalled and ended - signalled[0] < 3, ended - signalled[0]
    assert "interrupted" in capsys.readouterr().err


def test_an_update_refuses_a_table_whose_values_changed(loaded, production, tmp_path, capsys):
    """The file records the table's row count and a hash of its rows (computed by the
    server in the pass that reads the ids): an ``UPDATE`` of one value is refused, where
    before the update said every brick was unchanged and kept the stale psql_* values."""
    loaded.sql("DROP TABLE IF EXISTS obiwan.edited",
               "CREATE TABLE obiwan.edited AS SELECT * FROM obiwan.randoms_elg")
    bricks = open(os.path.join(production, "bricks.txt")).read().split()
    output = str(tmp_path / "edited.h5")
    assert _derive_cli(production, output, loaded.conninfo(), "obiwan.edited", "--bricks", ",".join(bricks[:2])) == 0
    # unchanged table: the update adds the third brick
    assert _derive_cli(production, output, loaded.conninfo(), "obiwan.edited", "--bricks", ",".join(bricks),
                       "--update") == 0
    with h5py.File(output, "r") as f:
        recorded = json.loads(f.attrs["truth_fingerprint"])
    assert recorded["rows"] == _rows_in(loaded, "obiwan.edited")
    loaded.sql("UPDATE obiwan.edited SET g = g + 0.5 WHERE id = (SELECT min(id) FROM obiwan.edited)")
    before = open(output, "rb").read()
    capsys.readouterr()
    assert _derive_cli(production, output, loaded.conninfo(), "obiwan.edited", "--bricks", ",".join(bricks),
                       "--update") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the truth table changed since the file was written (checksum" in err[0], err
    assert open(output, "rb").read() == before


def _rows_in(server, table):
    import psycopg

    with psycopg.connect(server.conninfo()) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE id IS NOT NULL").fetchone()[0]


def test_text_bool_and_null_integer_columns_reach_the_file(loaded, production, tmp_path):
    loaded.sql("DROP TABLE IF EXISTS obiwan.extra",
               "CREATE TABLE obiwan.extra AS SELECT *, 'src' || id::text AS label, NULL::int4 AS flag, "
               "(id % 2 = 0) AS even FROM obiwan.randoms_elg",
               "UPDATE obiwan.extra SET label = NULL, g = NULL WHERE id % 3 = 0")
    output = str(tmp_path / "extra.h5")
    assert _derive_cli(production, output, loaded.conninfo(), "obiwan.extra") == 0
    with h5py.File(output, "r") as f:
        ids, label = f["randoms/psql_id"][:], f["randoms/psql_label"][:]
        flag, even, g = f["randoms/psql_flag"][:], f["randoms/psql_even"][:], f["randoms/psql_g"][:]
        nulls = json.loads(f.attrs["truth_null_values"])
    # the file says what a NULL became where no NaN can hold it
    assert nulls["psql_flag"] == np.iinfo(np.int32).min and nulls["psql_label"] == "" and nulls["psql_even"] is False
    assert "psql_g" not in nulls
    width = max(len(f"src{i}") for i in ids)
    assert label.dtype.kind == "S" and label.dtype.itemsize >= width
    assert list(label[ids % 3 != 0]) == [f"src{i}".encode() for i in ids[ids % 3 != 0]]
    assert set(label[ids % 3 == 0]) == {b""} and np.all(np.isnan(g[ids % 3 == 0]))
    assert flag.dtype == np.int32 and np.all(flag == np.iinfo(np.int32).min)
    assert even.dtype == bool and np.array_equal(even, ids % 2 == 0)


def test_nulls_and_text_columns(loaded):
    from obiwan_h5.production.truthdb import DbTruthTable

    rows = np.zeros(4, dtype=[("id", "i8"), ("a", "i2"), ("b", "i4"), ("c", "i8"), ("x", "f4"), ("y", "f8"),
                              ("ok", "b1"), ("label", "S5")])
    rows["id"] = [40, 10, 30, 20]
    rows["label"] = [b"elg", b"", b"lrg", b"qso12"]
    load_table(loaded.conninfo(), "public.kinds", rows)
    loaded.sql("UPDATE kinds SET a = NULL, b = NULL, c = NULL, x = NULL, y = NULL, ok = NULL, label = NULL "
               "WHERE id = 30",
               "ALTER TABLE kinds ADD COLUMN note varchar(40)", "UPDATE kinds SET note = 'été' WHERE id = 10")
    truth = DbTruthTable(loaded.conninfo(), "kinds")
    assert {name: dtype.str for name, (dtype, _) in truth.schema.items()} == {
        "id": "<i8", "a": "<i2", "b": "<i4", "c": "<i8", "x": "<f4", "y": "<f8", "ok": "|b1", "label": "|S5",
        "note": "|S5"}  # 'été' is 5 bytes in UTF-8
    got = truth.lookup([30, 10, 30])
    assert list(got["id"]) == [30, 10, 30]
    assert got["a"][0] == -(2 ** 15) and got["b"][0] == -(2 ** 31) and got["c"][0] == -(2 ** 63)
    assert np.isnan(got["x"][0]) and np.isnan(got["y"][0]) and not got["ok"][0]
    assert got["label"][0] == b"" and got["label"][1] == b""
    assert got["note"][1].decode() == "été" and got["note"][0] == b""
    assert list(truth.rows_of([10, 20, 99])) == [0, 1, -1]
    with pytest.raises(InputError, match="2 id"):
        truth.lookup([10, 98, 99])
    truth.close()


def test_redact_removes_every_password():
    from obiwan_h5.production.truthdb import redact

    assert "pw" not in redact("host=h user=u password=pw dbname=d")
    assert "hidden" not in redact("postgresql://u:hidden@h:5432/d?sslmode=require")
    assert "user=u" in redact("postgresql://u:hidden@h:5432/d")
    assert "secret" not in redact("host=h password secret")


def test_options_need_both_database_and_table():
    with pytest.raises(InputError, match="`randoms_table`"):
        DeriveOptions(".", "out.h5", randoms_db="host=x")
    with pytest.raises(InputError, match="`db_connections`"):
        DeriveOptions(".", "out.h5", randoms_db="", randoms_table="t", db_connections=0)
    with pytest.raises(InputError, match="`db_connections` applies to a truth table in a database only"):
        DeriveOptions(".", "out.h5", db_connections=2)


def test_db_connections_without_a_database_is_refused_by_the_command(dr5_production, tmp_path, capsys):
    assert main(["derive", "--data-dir", dr5_production, "-o", str(tmp_path / "out.h5"), "--db-connections", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--db-connections applies to a truth table in a database only" in err[0], err
    assert os.listdir(tmp_path) == []


def test_simulate_loads_the_randoms_into_a_table(loaded, tmp_path, capsys):
    import fitsio

    from obiwan_h5.production.truthdb import DbTruthTable
    from obiwan_h5.sim.database import load_randoms_table

    root = str(tmp_path / "sim")
    args = ["simulate", "-o", root, "--n-bricks", "1", "--rsdirs", "1", "--per-rsdir", "20", "--processes", "1",
            "--randoms-db", loaded.conninfo(), "--randoms-table", "demo.randoms"]
    assert main(args) == 0
    expected = fitsio.read(os.path.join(root, "randoms.fits"))
    assert f"loaded {len(expected)} randoms into demo.randoms" in capsys.readouterr().out
    truth = DbTruthTable(loaded.conninfo(), "demo.randoms")
    got = truth.lookup(expected["id"])
    assert truth.columns == [name.lower() for name in expected.dtype.names]
    for name in expected.dtype.names:
        assert np.array_equal(got[name.lower()], expected[name]), name
    truth.close()
    with pytest.raises(InputError, match="exists.*`overwrite`"):
        load_randoms_table(loaded.conninfo(), "demo.randoms", os.path.join(root, "randoms.fits"))
    assert main(args + ["--overwrite"]) == 0
    assert main(args[:-2]) == 2
    assert "--randoms-table" in capsys.readouterr().err
