"""What the job tells: timings per phase, the file's provenance attributes, progress and
the closing table."""

import logging
import time
from datetime import datetime, timezone

import numpy as np

from .. import __version__
from ..core import selection
from ..fileformat import FORMAT_NAME, FORMAT_VERSION, OBIWAN_BITS, STATUS_NAMES

__all__ = ["Clock", "file_attrs", "final_report", "progress"]

log = logging.getLogger("obiwan_h5.derive")


class Clock:
    """Wall time per phase on this rank; `gather` takes the slowest rank of each phase."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.phases = {"plan": 0.0, "create": 0.0, "compute": 0.0, "wait": 0.0, "write": 0.0}

    def lap(self, phase):
        now = time.perf_counter()
        self.phases[phase] += now - self.last
        self.last = now

    def gather(self, comm):
        import resource

        names = sorted(self.phases)
        local = [self.phases[name] for name in names] + [time.perf_counter() - self.started]
        slowest = np.max(comm.allgather(local), axis=0)
        timings = {name: round(float(value), 4) for name, value in zip(names + ["total"], slowest)}
        # ru_maxrss is in KiB on Linux
        peak = comm.allgather(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        return timings, peak


def file_attrs(options, comm, command_line, plan):
    """The root attributes of a new file: format, provenance, bit and selection
    definitions; with truth from PostgreSQL, what its NULLs became."""
    names = {column.name for column in plan.columns}
    mask_columns = None
    for kind in ("anymask", "allmask"):
        if f"tractor_{kind}_g" in names or f"tractor_decam_{kind}" in names:
            mask_columns = kind
            break
    attrs = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "software_version": __version__,
        "creation_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": command_line,
        "inputs": options.recorded_inputs(),
        "match_radius_arcsec": options.match_radius,
        "obiwan_mask_bits": {name: {"bit": bit, "meaning": text} for name, (bit, text) in OBIWAN_BITS.items()},
        "targets_mask_bits": selection.BIT_DEFINITIONS,
        "selections": selection.selection_definitions(mask_columns),
        "nranks": comm.size,
        "fingerprint_kind": options.fingerprint_kind,
        "compression": options.compression_text,
    }
    if options.randoms_db is not None:
        attrs["truth_null_values"] = truth_null_values(plan.columns)
    return attrs


def truth_null_values(columns):
    """``{column: value}``: what a NULL of the truth table became in each ``psql_*``
    column that has no NaN to hold it (integers: the smallest value of the dtype; booleans:
    false; text: empty), so that readers can mask them."""
    from ..production.truthdb import NULL_FILL

    found = {}
    for column in columns:
        dtype = np.dtype(column.dtype)
        if column.name.startswith("psql_") and dtype.kind in "iubS":
            value = NULL_FILL[dtype.str] if dtype.kind in "iu" else NULL_FILL[dtype.kind]
            found[column.name] = value.decode() if isinstance(value, bytes) else (
                bool(value) if dtype.kind == "b" else int(value))
    return found


def progress(totals, started):
    elapsed = max(time.perf_counter() - started, 1e-9)
    remaining = totals["bricks"] - totals["done"]
    rate = totals["done"] / elapsed
    eta = remaining / rate if rate > 0 else float("nan")
    log.info("bricks %d/%d, %d rows, %.0f rows/s, ETA %.0f s",
             totals["done"], totals["bricks"], totals["rows"], totals["rows"] / elapsed, eta)


def final_report(path, index, elapsed):
    """The closing table: bricks and rows by status, from the file's own index."""
    lines = [f"wrote {path} in {elapsed:.1f} s", f"  {'status':<11}{'bricks':>9}{'rows':>12}"]
    for code, name in STATUS_NAMES.items():
        chosen = index["status"] == code
        lines.append(f"  {name:<11}{int(chosen.sum()):>9}{int(index['count'][chosen].sum()):>12}")
    log.info("\n".join(lines))
