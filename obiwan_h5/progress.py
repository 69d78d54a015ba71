"""Progress of the long commands (derive, simulate, export, subset, validate, plot).

One reporter for all of them. On a terminal it is a live tqdm bar; elsewhere (a Slurm log,
a pipe) it writes a plain line at most every `every` seconds (default 30), each with
done/total, rows/s and the ETA, and always a final line, so that a log shows how far a
job got without being flooded by a bar's redraws.

Library functions take a ``progress`` argument, off by default so that library calls stay
silent: False or None (silent), True (stderr, the default interval) or a `ProgressStyle`
(where and how often). The command line turns it on unless ``--quiet``. Under MPI only
rank 0 shows progress: the derive job passes the style on rank 0 and gathers the counts
of the other ranks itself; this module never imports mpi4py, so the reading side can use
it as well. tqdm is imported only when a bar is shown.
"""

import math
import sys
import time

from .errors import InputError

__all__ = ["DEFAULT_EVERY", "Progress", "ProgressStyle", "start_progress"]

# seconds between two progress lines when the output is not a terminal
DEFAULT_EVERY = 30.0


class ProgressStyle:
    """Where and how progress is shown.

    Parameters
    ----------
    stream : file-like, optional
        Where to write; ``sys.stderr`` (as it is when a reporter starts) when None.
    every : float
        Seconds between two plain lines (not a terminal); 0 writes one per update.
    bar : bool, optional
        Force the tqdm bar (True) or plain lines (False); None chooses a bar exactly when
        `stream` is a terminal.
    clock : callable
        Seconds as a float, for the rates and the throttle (tests inject their own).
    """

    def __init__(self, stream=None, every=DEFAULT_EVERY, bar=None, clock=time.monotonic):
        every = float(every)
        if not every >= 0:  # also refuses NaN
            raise InputError(f"`every` must be >= 0 seconds, not {every}")
        self.stream, self.every, self.bar, self.clock = stream, every, bar, clock

    def start(self, total, unit, desc, rows_total=None, counts_rows=True):
        """A new `Progress` of `total` `unit` (e.g. bricks) with this style."""
        return Progress(total, unit, desc, rows_total=rows_total, style=self, counts_rows=counts_rows)


def start_progress(progress, total, unit, desc, rows_total=None, counts_rows=True):
    """The reporter a library function uses for its `progress` argument.

    Parameters
    ----------
    progress : bool, None or ProgressStyle
        False or None: a silent reporter; True: stderr with the default style.
    total : int
        Units (bricks, rows, columns) to do.
    unit : str
        Their name, plural (``"bricks"``).
    desc : str
        What is being done, the start of every line (``"derive"``).
    rows_total : int, optional
        Rows to go through when the unit is not rows; the ETA then follows rows, which
        weigh large and small bricks fairly.
    counts_rows : bool
        False for work that goes through no rows (plot's figures): no rows nor rows/s shown.

    Returns
    -------
    Progress
    """
    if not progress:
        return Progress(total, unit, desc, rows_total=rows_total, style=None, counts_rows=counts_rows)
    style = progress if isinstance(progress, ProgressStyle) else ProgressStyle()
    return style.start(total, unit, desc, rows_total=rows_total, counts_rows=counts_rows)


class Progress:
    """Units done out of a known total, and rows gone through, shown as the style says.

    Use `update` (increments) or `moveto` (absolute counts) while working and `close` at
    the end (or a ``with`` block); a reporter without a style counts but shows nothing.
    Either may name the `item` being worked on (a figure), shown after the counts.
    """

    def __init__(self, total, unit, desc, rows_total=None, style=None, counts_rows=True):
        self.total, self.unit, self.desc = int(total), unit, desc
        self.rows_total = None if rows_total is None else int(rows_total)
        self.counts_rows = counts_rows
        self.item = None
        self.done = self.rows = 0
        self.style = style
        self.closed = False
        self._bar = None
        if style is None:
            self.mode = "silent"
            return
        self.stream = style.stream if style.stream is not None else sys.stderr
        self.clock = style.clock
        self.started = self._last = self.clock()
        wants_bar = style.bar if style.bar is not None else _isatty(self.stream)
        self.mode = "bar" if wants_bar else "lines"
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=f" {unit}", file=self.stream, dynamic_ncols=True,
                             leave=True)

    # -- counting ------------------------------------------------------------------------

    def update(self, n=1, rows=0, item=None):
        """`n` more units done and `rows` more rows gone through; now working on `item`."""
        self.moveto(self.done + n, self.rows + rows, item)

    def moveto(self, done, rows=None, item=None):
        """Set the counts: `done` units, `rows` rows (unchanged when None); `item`: what is
        being worked on now (None: nothing named)."""
        step = int(done) - self.done
        self.done = int(done)
        self.item = item
        if rows is not None:
            self.rows = int(rows)
        if self.mode == "bar":
            rows = self.counts_rows and self.unit != "rows"
            postfix = [f"{self.rows} rows, {self._rate():.0f} rows/s"] if rows else []
            postfix += [item] if item else []
            self._bar.set_postfix_str(", ".join(postfix), refresh=step == 0)
            self._bar.update(step)
        elif self.mode == "lines":
            now = self.clock()
            if now - self._last >= self.style.every:
                self._last = now
                self._write(self.line(now))

    def close(self):
        """Show the final state (a last line, or the bar at its end); only once."""
        if self.closed:
            return
        self.closed = True
        if self.mode == "bar":
            self._bar.close()
        elif self.mode == "lines":
            self._write(self.line(self.clock(), final=True))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- text ----------------------------------------------------------------------------

    def _rate(self, now=None):
        elapsed = (self.clock() if now is None else now) - self.started
        return self.rows / elapsed if elapsed > 0 else 0.0

    def eta(self, now):
        """Seconds left, from the fraction done so far (of rows when their total is known),
        or None when nothing is done yet."""
        if self.rows_total:
            fraction = self.rows / self.rows_total
        elif self.total:
            fraction = self.done / self.total
        else:
            fraction = 1.0
        elapsed = now - self.started
        if fraction <= 0:
            return None
        return max(0.0, elapsed * (1 - fraction) / fraction)

    def line(self, now, final=False):
        """One progress line: ``derive: 12/200 bricks (6%), 120000 rows, 5400 rows/s,
        elapsed 22 s, ETA 5 min 44 s``."""
        percent = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit} ({percent:.0f}%)"]
        if self.item and not final:
            parts.append(self.item)
        if self.counts_rows:
            if self.unit != "rows":
                parts.append(f"{self.rows} rows")
            parts.append(f"{self._rate(now):.0f} rows/s")
        parts.append(f"elapsed {_duration(now - self.started)}")
        if final:
            parts.append("finished")
        else:
            eta = self.eta(now)
            parts.append(f"ETA {_duration(eta) if eta is not None else 'unknown'}")
        return ", ".join(parts)

    def _write(self, text):
        self.stream.write(text + "\n")
        self.stream.flush()


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _duration(seconds):
    """``42 s``, ``5 min 44 s``, ``2 h 03 min``."""
    if not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
