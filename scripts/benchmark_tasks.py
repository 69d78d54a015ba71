#!/usr/bin/env python
"""Work that `benchmark.py` times under mpiexec, apart from `obiwan-h5 derive` itself.

    mpiexec -n R python scripts/benchmark_tasks.py read-inputs DATA_DIR
    mpiexec -n R python scripts/benchmark_tasks.py legacy DATA_DIR OUT_DIR

``read-inputs`` reads every input file the derivation needs, with the same readers, ranks
and brick ranges as the derive job, and does nothing else: the floor for derive.

``legacy`` is the architecture obiwan_h5 replaces, with the same derivation code: every rank
writes one FITS file per brick (derived_tables.py), then merges its bricks into one FITS
file per rank (merged_tables.py, parallel mode), then rank 0 merges those into the single
final table (serial mode).
"""

import glob
import os
import sys

import fitsio
import numpy as np
from mpi4py import MPI

from obiwan_h5.core.derivation import brick_pieces
from obiwan_h5.core.schema import join_pieces
from obiwan_h5.job import DeriveOptions
from obiwan_h5.job.plan import assign_ranges
from obiwan_h5.job.scan import Scanner
from obiwan_h5.production.inputs import (
    FitsTable,
    primary_tractor,
    read_ids_added,
    read_radec,
    read_survey_bricks,
)
from obiwan_h5.production.layout import Production, read_brick_list
from obiwan_h5.production.truth import TruthTable

comm = MPI.COMM_WORLD


def my_bricks(data_dir):
    bricknames = read_brick_list(os.path.join(data_dir, "bricks.txt"))
    # equal row counts per brick in a simulated production: equal shares of bricks
    bounds = assign_ranges(np.ones(len(bricknames)), comm.size)
    return bricknames, bricknames[bounds[comm.rank]:bounds[comm.rank + 1]]


def read_inputs(data_dir):
    production = Production(data_dir)
    truth = TruthTable(os.path.join(data_dir, "randoms.fits"))
    bricknames, mine = my_bricks(data_dir)
    read_survey_bricks(os.path.join(data_dir, "survey-bricks.fits"), bricknames)
    rows = 0
    for brick in mine:
        ids = []
        for rsdir in production.rsdirs(brick):
            # every column of the simcat, as the derivation reads it (loaded whole)
            simcat = FitsTable(production.simcat(brick, rsdir), load="read").read()
            added = read_ids_added(production.ids_added(brick, rsdir))
            # every page of the catalog mapped, converted as far as the derivation converts it
            # up front (brick_primary, ra, dec)
            primary_tractor(FitsTable(production.tractor(brick, rsdir), load="map"))
            ids.append(simcat["id"][np.isin(simcat["id"], added)])
        truth.lookup(np.concatenate(ids))
        read_radec(FitsTable(production.dr_tractor(brick), load="map"))
        rows += sum(len(part) for part in ids)
    return comm.allreduce(rows)


def brick_table(scanner, bounds, options, brick):
    """The derived rows of one brick as one table, as derived_tables.py wrote them: the job's
    scan and reading, and the derivation of each rsdir (`core.derivation.brick_pieces`)."""
    _, inputs = scanner.scan(brick, bounds[brick])
    pieces, dr = inputs.read(0, options.keep_all_apflux)
    ids = np.concatenate([piece.simcat.column("id") for piece in pieces])
    parts = [(piece.rsdir, piece.simcat, piece.tractor) for piece in pieces]
    return join_pieces(brick_pieces(brick, parts, scanner.truth.lookup(ids), dr, options.match_radius))


def _as_records(columns):
    dtype = [(name, values.dtype, values.shape[1:]) for name, values in columns.items()]
    records = np.empty(len(next(iter(columns.values()))), dtype=dtype)
    for name, values in columns.items():
        records[name] = values
    return records


def _merge(paths, output):
    """Read whole tables and write their concatenation, as merged_tables.py did."""
    tables = [fitsio.read(path) for path in paths]
    fitsio.write(output, np.concatenate(tables) if tables else np.zeros(0), clobber=True)


def legacy(data_dir, out_dir):
    bricknames, mine = my_bricks(data_dir)
    options = DeriveOptions(data_dir, os.path.join(out_dir, "unused.h5"))
    production = Production(data_dir)
    bounds = read_survey_bricks(options.survey_bricks, bricknames)
    scanner = Scanner(production, TruthTable(options.randoms), options)
    per_brick = os.path.join(out_dir, "derived")
    per_rank = os.path.join(out_dir, "merged")
    if comm.rank == 0:
        os.makedirs(per_brick, exist_ok=True)
        os.makedirs(per_rank, exist_ok=True)
    comm.Barrier()
    # stage 1: one derived table per brick
    written = []
    for brick in mine:
        columns = brick_table(scanner, bounds, options, brick)
        path = os.path.join(per_brick, f"derived_{brick}.fits")
        fitsio.write(path, _as_records(columns), clobber=True)
        written.append(path)
    # stage 2: each rank merges its bricks (the "parallel" mode, < 100 files)
    _merge(written, os.path.join(per_rank, f"merged_rank{comm.rank:04d}.fits"))
    comm.Barrier()
    # stage 3: one process merges those into the final table (the "serial" mode)
    if comm.rank == 0:
        _merge(sorted(glob.glob(os.path.join(per_rank, "merged_rank*.fits"))), os.path.join(out_dir, "merged.fits"))
    comm.Barrier()


def main(argv):
    task = argv[0]
    if task == "read-inputs":
        rows = read_inputs(argv[1])
        if comm.rank == 0:
            print(f"read inputs of {rows} rows")
    elif task == "legacy":
        legacy(argv[1], argv[2])
    else:
        raise SystemExit(f"unknown task {task!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
