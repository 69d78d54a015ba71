"""The truth table of the job's ranks, from a file or from PostgreSQL with few connections.

Every truth source of the job has one small interface: ``schema``, ``columns``, ``path``,
``rows_of(ids)`` (rows in the shared index, -1 when absent: the scan's check),
``fetch(ids)`` (every truth column of `ids`; collective: each rank calls it once per write
round, with the ids of the bricks it derives in that round), ``save_index`` and ``close``.

A file (`FileTruth` over `production.truth.TruthTable`) is read by every rank. A database table
(`production.truthdb.DbTruthTable`) is queried by at most `db_connections` = K
ranks, because the server accepts far fewer connections than a job has ranks:

- rank 0 reads the catalogue and every id once (the index); every rank maps that index
  (files shared through the page cache, as for a file), so `rows_of` and the scan need no
  connection;
- ranks ``r < K`` hold a connection; rank ``r >= K`` is served by rank ``r % K``;
- the rows are fetched once per write round: `SharedTruth.fetch` is collective (every rank
  calls it once per `compute_segment`, entered by every rank the same number of times).
  Each rank sends the ids of its segment to its server (one ``alltoall``), each server
  queries the union of its clients' ids and its own (batched arrays), and the rows go back
  by a second ``alltoall``. A server whose query fails sends the error instead, so no rank
  ever waits for a peer that gave up: the bricks of the ranks concerned fail with that
  message (and a `resume` later redoes them).

Memory: a server holds the truth rows of its clients' segments during a round (about
size/K segments' worth of truth columns, a few per cent of the derived rows).
"""

import numpy as np

from ..errors import BrickError, InputError
from ..production.truth import TruthTable

__all__ = ["FileTruth", "SharedTruth", "open_truth", "truth_description"]


def open_truth(options, comm, index_files=None, described=None):
    """The truth table of `options` on this rank.

    Rank 0 calls it with no `index_files` (it builds the index); the other ranks with the
    index files and rank 0's `truth_description`.
    """
    if options.randoms_db is None:
        return FileTruth(options.randoms, index_files=index_files)
    from ..production.truthdb import DbTruthTable

    servers = min(options.db_connections, comm.size)
    base = DbTruthTable(options.randoms_db, options.randoms_table, index_files=index_files,
                        described=described, connect=comm.rank < servers, timeout_s=options.db_timeout)
    return SharedTruth(base, comm, servers)


def truth_description(truth):
    """What the other ranks need to open the same database table without catalogue queries."""
    return truth.base.description() if isinstance(truth, SharedTruth) else None


class FileTruth(TruthTable):
    """A truth table file, read by every rank on its own: a `production.truth.TruthTable`
    whose ``fetch`` is its ``lookup`` (no other rank involved)."""

    def fetch(self, ids):
        """Every truth column of `ids`, in the order given."""
        return self.lookup(ids)

    def close(self):
        """Nothing to release: the table is read once, into memory."""
        pass


class SharedTruth:
    """A `DbTruthTable` shared by the ranks of `comm`, of which the first `servers` connect.

    ``fetch`` is `prefetch` (collective) then `lookup` (from the rows prefetched).
    """

    def __init__(self, base, comm, servers):
        self.base = base
        self.comm = comm
        self.servers = servers
        self.path = base.path
        self.columns = base.columns
        self.schema = base.schema
        self._ids = np.zeros(0, np.int64)
        self._rows = None
        self._error = None

    def __len__(self):
        return len(self.base)

    def rows_of(self, ids):
        """The table row of each of `ids` (-1 when absent), from the database's id index."""
        return self.base.rows_of(ids)

    def save_index(self, ids_file, rows_file):
        """Write the database's id index to `ids_file` and `rows_file` (`DbTruthTable.save_index`)."""
        self.base.save_index(ids_file, rows_file)

    def fingerprint(self, content=True):
        """The database table's fingerprint (`DbTruthTable.fingerprint`)."""
        return self.base.fingerprint(content)

    def close(self):
        """Close this rank's connection, if it has one."""
        self.base.close()

    def fetch(self, ids):
        """Collective: every truth column of `ids` (this rank's round), in the order given."""
        self.prefetch(ids)
        return self.lookup(ids)

    def prefetch(self, ids):
        """Collective: fetch the truth rows of `ids` (this rank's segment) for `lookup`.

        Every rank of the communicator must call it, the same number of times.
        """
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        ids = ids[self.base.rows_of(ids) >= 0]  # absent ids already failed their brick at the scan
        if self.comm.size == 1:
            _, rows, error = self._serve([ids])
            self._keep(ids, rows, error)
            return
        size, rank = self.comm.size, self.comm.rank
        server = rank % self.servers
        requests = [None] * size
        requests[server] = ids
        received = self.comm.alltoall(requests)
        replies = [None] * size
        if rank < self.servers:
            clients = [source for source in range(size) if received[source] is not None]
            wanted, rows, error = self._serve([received[source] for source in clients])
            for source in clients:
                if error is not None:
                    replies[source] = error
                else:
                    at = np.searchsorted(wanted, received[source])
                    replies[source] = {name: values[at] for name, values in rows.items()}
        answer = self.comm.alltoall(replies)[server]
        if isinstance(answer, str):
            self._keep(ids, None, answer)
        else:
            self._keep(ids, answer, None)

    def _serve(self, requests):
        """The union of `requests` (sorted ids), their rows, or the error that prevented it."""
        wanted = np.unique(np.concatenate(requests)) if requests else np.zeros(0, np.int64)
        try:
            return wanted, self.base.lookup(wanted), None
        except InputError as err:
            return wanted, None, str(err)
        except Exception as err:  # noqa: BLE001 — a server never leaves its clients waiting
            return wanted, None, f"{self.path}: {type(err).__name__}: {err}"

    def _keep(self, ids, rows, error):
        self._ids, self._rows, self._error = ids, rows, error

    def lookup(self, ids):
        """Every truth column for `ids`, from the last `prefetch`."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = self.base.rows_of(ids)
        if np.any(rows < 0):
            missing = ids[rows < 0]
            raise InputError(
                f"{self.path}: {len(missing)} id(s) not in the randoms truth table (first: {missing[0]})")
        if self._error is not None:
            raise BrickError(f"truth rows not read: {self._error}")
        if not len(ids):
            return {name: np.zeros(0, dtype) for name, (dtype, _) in self.schema.items()}
        at = np.searchsorted(self._ids, ids)
        fetched = self._rows is not None and np.all(at < len(self._ids))
        if not fetched or np.any(self._ids[at] != ids):
            raise BrickError("truth rows were not fetched for this brick (internal error)")
        return {name: values[at] for name, values in self._rows.items()}
