"""The derived file on disk (docs/format.md): collective creation and collective row writes.

Three ways to write, chosen once in `DerivedWriter`:

* parallel — h5py built against parallel HDF5 and several ranks: every rank opens the file
  with the ``mpio`` driver and writes its own row range of each column collectively;
* funnel — several ranks but an h5py without MPI: rank 0 alone opens the file, the other
  ranks send it their rows;
* serial — one process.

Parallel-HDF5 traps handled here: every rank makes the same sequence of
collective calls (a rank with no rows writes an empty "none" selection through the
low-level API, because h5py's high-level slice assignment skips empty selections and the
other ranks hang); objects are created in sorted order with identical arguments; strings
are fixed-width bytes; no single MPI-IO call exceeds `max_call_bytes`; fill values are
never written (``fill_time="never"``); filters that may decline a chunk (LZF) are refused,
because the collective write path loses the record of a declined chunk
(`DECLINING_FILTERS`).
"""

import logging
import math
import os
import sys

import h5py
import numpy as np

from ..errors import JobError, OutputError
from ..fileformat import INDEX_DESCRIPTIONS, INDEX_DTYPES, MESSAGE_WIDTH, attr_value, truncate_message
from ..outputs import PARTIAL_HDF5_LOCKING, place_problem
from .bytecopy import copy_ranges
from .faults import maybe_kill
from .mpi import h5py_has_mpi, mpi_max
from .options import MAX_CALL_BYTES
from .output import ATTR_CREATED

log = logging.getLogger("obiwan_h5.writer")

__all__ = ["DerivedWriter", "parallel_filter_problem", "writer_mode"]

# Filters that may decline a chunk they cannot shrink: h5py registers LZF as an optional
# filter, so HDF5 stores such a chunk unfiltered and says so in the chunk's filter mask.
# The collective write path of parallel HDF5 (1.10.8 here) drops that mask: the chunk is
# recorded as compressed, so every reader fails on it, and a rank that adds rows to it
# fails alone while the others wait in the collective write (the hang of issue 18).
# gzip (deflate) is a mandatory filter that never declines, and so is shuffle.
DECLINING_FILTERS = ("lzf",)


def writer_mode(comm):
    """How `DerivedWriter` writes with `comm`: ``serial``, ``parallel`` or ``funnel``."""
    if comm.size == 1:
        return "serial"
    return "parallel" if h5py_has_mpi() else "funnel"


def parallel_filter_problem(compression, comm):
    """Why the ranks of `comm` cannot write columns filtered by `compression`, or None."""
    if compression in DECLINING_FILTERS and writer_mode(comm) == "parallel":
        return (f"`compression` {compression} cannot be written by several MPI ranks: parallel HDF5 "
                f"({h5py.version.hdf5_version} here) records a chunk {compression} could not shrink as "
                "compressed, which makes the file unreadable; use gzip, or one process "
                "(docs/performance.md, Compression)")
    return None


class DerivedWriter:
    """An open derived file, shared by all ranks of `comm`.

    Use `create` for a new file and `open_existing` to resume one.

    Parameters
    ----------
    path : str
    comm : communicator
    mode : {"w", "r+"}
    mpi_info : dict, optional
        MPI-IO hints (e.g. ``{"romio_cb_write": "enable", "striping_factor": "16"}``).
    alignment : (int, int), optional
        HDF5 alignment threshold and interval in bytes (match the Lustre stripe size).
    max_call_bytes : int
        Largest buffer handed to one write call.
    advice : str, optional
        What the message of a failed write tells to do (default: `resume`).
    """

    def __init__(self, path, comm, mode, mpi_info=None, alignment=None, max_call_bytes=MAX_CALL_BYTES, advice=None):
        self.path = path
        self.comm = comm
        self.max_call_bytes = max_call_bytes
        self.advice = advice or "once fixed, run the job again with `resume` to complete it"
        self.mode = writer_mode(comm)
        if self.mode == "funnel":
            if comm.rank == 0:
                log.warning("h5py was built without MPI: rank 0 writes the rows every rank sends it "
                            "(correct but slower; see docs/install.md for a parallel build)")
        # the file is a partial held by rank 0 (`outputs.Partial`), or the output completed
        # in place under the job's lock
        kwargs = {"locking": PARTIAL_HDF5_LOCKING}
        if alignment:
            kwargs.update(alignment_threshold=alignment[0], alignment_interval=alignment[1])
        self.file = None
        self.has_fingerprints = True
        # datasets looked up once: an h5py lookup by name costs ~50 us, paid per column and
        # write call otherwise (a tenth of a second in a job of a few hundred calls)
        self._datasets = {}
        self._unraisable = []
        # from here to `close`, objects h5py frees may carry HDF5 write errors (Cython prints
        # their traceback through sys.excepthook before reporting them as unraisable)
        self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._record_unraisable
        self._previous_excepthook, sys.excepthook = sys.excepthook, self._record_freeing_error
        if self.mode == "parallel":
            from mpi4py import MPI

            info = MPI.Info.Create()
            for key, value in (mpi_info or {}).items():
                info.Set(str(key), str(value))
            self.file = h5py.File(path, mode, driver="mpio", comm=comm, info=info, **kwargs)
            self._dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
            self._dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
        elif comm.rank == 0:
            self.file = h5py.File(path, mode, **kwargs)
            self._dxpl = None

    # -- creation --------------------------------------------------------------------

    @classmethod
    def create(cls, path, comm, plan, summary_columns, attrs, chunk_bytes=4 << 20, filters=None, **options):
        """Create the file at `path` (a partial name, see `job.output`) and every dataset,
        preallocated to its final size (collective). The attribute
        ``output.ATTR_CREATED`` marks a file whose layout is complete.

        `filters` (``create_dataset`` keywords: ``compression``, ``compression_opts``,
        ``shuffle``) compress the randoms and summary columns; they need `chunk_bytes`.
        Parallel HDF5 applies filters only in collective writes, which is how every row
        is written here; filters that may decline a chunk are refused in parallel
        (`parallel_filter_problem`), on every rank alike.
        """
        problem = parallel_filter_problem((filters or {}).get("compression"), comm)
        if problem:
            raise JobError(problem)
        writer = cls(path, comm, "w", **options)
        if writer.file is not None:
            writer._guarded(writer._create_layout, plan, summary_columns, attrs, chunk_bytes, filters or {})
        return writer

    def _create_layout(self, plan, summary_columns, attrs, chunk_bytes, filters):
        writer, out = self, self.file
        out.attrs["complete"] = False
        for key in sorted(attrs):
            out.attrs[key] = attr_value(attrs[key])
        nbricks = len(plan.bricknames)
        randoms = out.create_group("randoms")
        randoms.attrs["column_order"] = ",".join(column.name for column in plan.columns)
        for column in sorted(plan.columns, key=lambda c: c.name):
            writer._create(randoms, column, plan.total_rows, chunk_bytes, filters)
        maybe_kill("create", self.comm.rank, 0, os.path.dirname(self.path))
        summary = out.create_group("summary")
        summary.attrs["column_order"] = ",".join(column.name for column in summary_columns)
        for column in sorted(summary_columns, key=lambda c: c.name):
            writer._create(summary, column, nbricks, chunk_bytes, filters)
        bricks = out.create_group("bricks")
        index = {
            "name": [name.encode() for name in plan.bricknames],
            "offset": plan.offsets,
            "count": plan.counts,
            "status": plan.status,
            "message": [truncate_message(m) for m in plan.messages],
            "checksum": np.zeros(nbricks),
            "fingerprint": np.zeros(nbricks),
        }
        for name in sorted(index):
            # every rank passes the same data, so the collective create writes it consistently
            data = np.asarray(index[name], dtype=INDEX_DTYPES[name])
            dset = bricks.create_dataset(name, data=data, track_times=False)
            dset.attrs["description"] = INDEX_DESCRIPTIONS[name]
            if name == "checksum":
                dset.attrs["columns"] = ",".join(sorted(column.name for column in plan.columns))
        out.attrs[ATTR_CREATED] = True
        out.flush()

    def _create(self, group, column, nrows, chunk_bytes, filters):
        shape = (nrows,) + tuple(column.shape)
        chunks = None
        if chunk_bytes and nrows > 0:
            rows = max(1, min(nrows, chunk_bytes // max(column.row_bytes, 1)))
            chunks = (rows,) + tuple(column.shape)
        dset = group.create_dataset(
            column.name, shape=shape, dtype=column.dtype, chunks=chunks,
            fill_time="never", track_times=False, **(filters if chunks else {}),
        )
        dset.attrs["description"] = column.description
        if column.unit:
            dset.attrs["unit"] = column.unit

    @classmethod
    def open_existing(cls, path, comm, **options):
        """Reopen a file to complete it (collective)."""
        writer = cls(path, comm, "r+", **options)
        has = None if writer.file is None else "fingerprint" in writer.file["bricks"]
        writer.has_fingerprints = bool(comm.bcast(has, root=0) if writer.mode == "funnel" else has)
        return writer

    def _guarded(self, action, *args):
        """Run an HDF5 action; an IO failure (disk full, quota, lost file system) becomes one
        `OutputError` naming the file and the reason, instead of HDF5's error stack.

        HDF5 may meet the failure while evicting cached chunks in any later call, and h5py
        can then only report it as "unraisable" (see `_record_unraisable`): such a report
        during the action fails it too, so no brick is ever marked done over rows that did
        not reach the file.
        """
        seen = len(self._unraisable)
        try:
            result = action(*args)
        except (OSError, RuntimeError) as err:
            raise self._output_error(str(err)) from None
        if len(self._unraisable) > seen:
            raise self._output_error(self._unraisable[seen])
        return result

    def _output_error(self, text):
        reason = place_problem(text) or (text.splitlines()[0] if text else "IO error")
        return OutputError(f"{self.path}: cannot write the output ({reason}); {self.advice}")

    def _record_freeing_error(self, exc_type, value, traceback):
        """Hook for tracebacks: one from h5py freeing an object is kept like an unraisable
        error (`_record_unraisable`), any other is shown as usual."""
        last = traceback
        while last is not None and last.tb_next is not None:
            last = last.tb_next
        if last is not None and last.tb_frame.f_code.co_name.endswith("_dealloc"):
            self._unraisable.append(str(value))
            log.debug("HDF5 error while freeing an object: %s", value)
            return
        self._previous_excepthook(exc_type, value, traceback)

    def _record_unraisable(self, unraisable):
        """Hook for errors raised while h5py frees an object (HDF5 failing to flush it):
        kept for `_guarded` and the debug log instead of printed as a traceback."""
        self._unraisable.append(str(unraisable.exc_value))
        log.debug("HDF5 error while freeing an object: %s", unraisable.exc_value)

    def write_block(self, group, start, columns, names):
        """Collective: write `columns` (name -> array, all of equal length) at row `start`.

        `names` is the full sorted list of the group's columns, the same on every rank; a
        rank with nothing to write passes ``columns={}`` and still takes part in every call.
        """
        self._guarded(self._write_block, group, start, columns, names)

    def _write_block(self, group, start, columns, names):
        if self.mode == "funnel":
            blocks = self.comm.gather((start, columns), root=0)
            if self.file is not None:
                for block_start, block in blocks:
                    for name in names:
                        values = block.get(name)
                        if values is not None and len(values):
                            self._dataset(group, name)[block_start:block_start + len(values)] = values
            return
        nrows = len(next(iter(columns.values()))) if columns else 0
        widest = max((values.nbytes // max(len(values), 1) for values in columns.values()), default=0)
        pieces = max(1, math.ceil(nrows * widest / self.max_call_bytes)) if nrows else 1
        if self.mode == "parallel":
            pieces = self.comm.allreduce(pieces, op=mpi_max())
        bounds = np.linspace(0, nrows, pieces + 1).astype(np.int64)
        for name in names:
            dset = self._dataset(group, name)
            values = columns.get(name)
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                if values is None or hi == lo:
                    self._write_none(dset)
                else:
                    self._write_rows(dset, start + lo, np.ascontiguousarray(values[lo:hi]))

    def _dataset(self, group, name):
        key = (group, name)
        if key not in self._datasets:
            self._datasets[key] = self.file[group][name]
        return self._datasets[key]

    def _write_rows(self, dset, start, values):
        fspace = dset.id.get_space()
        fspace.select_hyperslab((int(start),) + (0,) * (values.ndim - 1), values.shape)
        mspace = h5py.h5s.create_simple(values.shape)
        dset.id.write(mspace, fspace, values, dxpl=self._dxpl)

    def _write_none(self, dset):
        if self.mode != "parallel":
            return  # only collective transfers need every rank to join
        fspace = dset.id.get_space()
        fspace.select_none()
        dummy = np.zeros((1,) + dset.shape[1:], dtype=dset.dtype)
        mspace = h5py.h5s.create_simple(dummy.shape)
        mspace.select_none()
        dset.id.write(mspace, fspace, dummy, dxpl=self._dxpl)

    def dataset(self, group, name):
        """The dataset `name` of `group` (on ranks that have the file open)."""
        return self._dataset(group, name)

    def copy_bytes(self, source, ranges):
        """Independent: copy the byte `ranges` ``(offset in source, offset here, length)``
        of the file `source` into this file, past HDF5 (an update's rows whose bytes are the
        same in both files; `job.bytecopy`).

        Only for the ``parallel`` mode, whose MPI-IO driver keeps no raw data in memory
        (HDF5's sieve buffer, which could write stale bytes back over these, is off): the
        caller orders the copy between rounds of collective writes (`job.bytecopy`), and
        a `flush` makes it durable.
        """
        if ranges:
            self._guarded(copy_ranges, source, self.path, ranges)

    def write_status(self, first, status, messages, checksums, fingerprints):
        """Collective: status, message, checksum and input fingerprint of bricks
        ``[first, first + len(status))``."""
        columns = {}
        if len(status):
            columns = {
                "status": np.asarray(status, dtype=np.int8),
                "message": np.array([truncate_message(m) for m in messages], dtype=f"S{MESSAGE_WIDTH}"),
                "checksum": np.asarray(checksums, dtype=np.uint32),
                "fingerprint": np.asarray(fingerprints, dtype=np.uint64),
            }
        names = ["checksum", "message", "status"] + (["fingerprint"] if self.has_fingerprints else [])
        self.write_block("bricks", first, columns, names)

    def flush(self):
        """Collective: push everything written so far to the file system."""
        if self.file is not None:
            self._guarded(self.file.flush)

    def set_attrs(self, attrs):
        """Collective: set file attributes (same values on every rank)."""
        if self.file is not None:
            for key in sorted(attrs):
                self._guarded(self.file.attrs.__setitem__, key, attr_value(attrs[key]))

    def read_index(self):
        """The /bricks datasets as numpy arrays, on every rank."""
        index = None
        if self.file is not None:
            index = self._guarded(lambda: {name: self.file["bricks"][name][:] for name in self.file["bricks"]})
        if self.mode == "funnel":
            index = self.comm.bcast(index, root=0)
        return index

    def close(self):
        """Collective: close the file (flushing what is left)."""
        if self.file is not None:
            handle, self.file = self.file, None
            self._datasets.clear()
            self._guarded(handle.close)
        sys.unraisablehook = self._previous_hook
        sys.excepthook = self._previous_excepthook
