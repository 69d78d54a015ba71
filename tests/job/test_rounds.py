"""A write round goes through each step as one set of arrays; what every brick pays is
paid once (its listing, each file opened once); a file changed under the job fails its brick."""

import os

import fitsio
import h5py
import numpy as np

from obiwan_h5.fileformat import DONE, FAILED
from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm
from obiwan_h5.production.layout import Production


def _bricks(production):
    return open(os.path.join(production, "bricks.txt")).read().split()


def test_a_round_is_derived_in_one_pass_and_each_brick_listed_once(dr5_production, dr5_derived, tmp_path, monkeypatch):
    """The job's one round: every piece of every brick in one `derive_rows` call, every
    brick's rsdirs listed once (to weigh it, and that listing reused by its scan); the same
    file as a run split into rounds of one brick each."""
    import obiwan_h5.job.compute as compute

    calls, listed = [], []
    real_derive, real_rsdirs = compute.derive_rows, Production.rsdirs

    def derive_rows(pieces, *args, **kwargs):
        calls.append([(piece.brickname, piece.rsdir) for piece in pieces])
        return real_derive(pieces, *args, **kwargs)

    def rsdirs(self, brickname):
        listed.append(brickname)
        return real_rsdirs(self, brickname)

    monkeypatch.setattr(compute, "derive_rows", derive_rows)
    monkeypatch.setattr(Production, "rsdirs", rsdirs)
    output = str(tmp_path / "out.h5")
    derive(DeriveOptions(dr5_production, output), SerialComm())
    bricks = _bricks(dr5_production)
    assert calls == [[(brick, rsdir) for brick in bricks for rsdir in ("rs0", "rs1")]]
    assert sorted(listed) == sorted(bricks)
    monkeypatch.undo()
    with h5py.File(output, "r") as got, h5py.File(dr5_derived, "r") as want:
        for group in ("randoms", "summary", "bricks"):
            for name in want[group]:
                a, b = got[group][name][:], want[group][name][:]
                assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (group, name)


def test_a_catalog_changed_between_scan_and_compute_fails_its_brick(production_copy, tmp_path, monkeypatch):
    """The fingerprint recorded for a brick is that of the files its rows come from: a
    catalog rewritten after the brick's scan fails the brick, saying so, and no other."""
    from obiwan_h5.job.scan import Scanner

    layout, bricks = Production(production_copy), _bricks(production_copy)
    victim = bricks[2]
    real_scan = Scanner.scan

    def scan_then_rewrite(self, brickname, *args, **kwargs):
        found = real_scan(self, brickname, *args, **kwargs)
        if brickname == victim:  # the same rows, a new file: another size or time
            path = layout.tractor(victim, "rs1")
            data = fitsio.read(path)
            os.remove(path)
            fitsio.write(path, data[:-1])
        return found

    monkeypatch.setattr(Scanner, "scan", scan_then_rewrite)
    output = str(tmp_path / "out.h5")
    totals = derive(DeriveOptions(production_copy, output), SerialComm())
    assert totals["failed"] == 1
    with h5py.File(output, "r") as derived:
        names = [name.decode() for name in derived["bricks/name"][:]]
        status = dict(zip(names, derived["bricks/status"][:]))
        message = dict(zip(names, derived["bricks/message"][:]))
    assert status[victim] == FAILED and b"changed since the scan" in message[victim]
    assert all(status[name] == DONE for name in bricks if name != victim)


def test_a_long_brick_list_is_read_in_linear_time():
    """Nothing per brick grows with the number of bricks: 60,000 names, each given twice, are
    parsed in about a second (a list scanned for each name took a minute), unique, in the
    order first given."""
    import time

    from obiwan_h5.core.bricks import parse_brick_names

    names = [f"{ra:04d}{'p' if ra % 2 else 'm'}{dec:03d}" for ra in range(300) for dec in range(200)]
    start = time.perf_counter()
    parsed = parse_brick_names([" ".join(names[i:i + 100]) for i in range(0, len(names), 100)] + names[::-1])
    assert time.perf_counter() - start < 10
    assert parsed == names
