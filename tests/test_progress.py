"""The progress reporter of the long commands (`obiwan_h5.progress`) and its use by the CLI."""

import io
import re

import pytest

from obiwan_h5 import cli
from obiwan_h5.errors import InputError
from obiwan_h5.progress import DEFAULT_EVERY, ProgressStyle, start_progress

LINE = re.compile(r"^(?P<desc>[\w-]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \((?P<percent>\d+)%\)"
                  r"(, (?P<rows>\d+) rows)?, (?P<rate>\d+) rows/s, elapsed [^,]+, (ETA (?P<eta>.+)|finished)$")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _lines(stream):
    return [line for line in stream.getvalue().splitlines() if line]


def test_lines_are_throttled_to_one_every_interval():
    clock, stream = Clock(), io.StringIO()
    shown = ProgressStyle(stream=stream, every=30, clock=clock).start(10, "bricks", "derive", rows_total=1000)
    assert shown.mode == "lines"
    written = []
    for step, at in enumerate([5, 20, 29.9, 30.0, 31, 59, 60.5, 61, 62, 95], 1):
        clock.now = 1000.0 + at
        shown.update(1, rows=100)
        written.append(len(_lines(stream)))
    # a line at 30.0 (30 s after the start), 60.5 (30.5 s after that) and 95: never two within 30 s
    assert written == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    clock.now = 1100.0
    shown.close()
    shown.close()  # only one final line
    lines = _lines(stream)
    assert len(lines) == 4
    first = LINE.match(lines[0]).groupdict()
    assert (first["desc"], first["done"], first["total"], first["unit"], first["rows"]) == \
        ("derive", "4", "10", "bricks", "400")
    assert first["rate"] == str(round(400 / 30)) and first["eta"] == "45 s"  # 40 % of the rows in 30 s
    last = LINE.match(lines[-1]).groupdict()
    assert last["done"] == last["total"] == "10" and last["rows"] == "1000" and last["eta"] is None
    assert lines[-1].endswith("elapsed 1 min 40 s, finished")


def test_interval_zero_writes_a_line_per_update_and_a_final_line():
    clock, stream = Clock(), io.StringIO()
    with ProgressStyle(stream=stream, every=0, clock=clock).start(3000, "rows", "export") as shown:
        for _ in range(3):
            clock.now += 2
            shown.update(1000, rows=1000)
    lines = _lines(stream)
    assert len(lines) == 4
    parsed = [LINE.match(line).groupdict() for line in lines]
    assert [p["done"] for p in parsed] == ["1000", "2000", "3000", "3000"]
    assert all(p["total"] == "3000" and p["unit"] == "rows" and p["rows"] is None for p in parsed)
    assert [p["rate"] for p in parsed] == ["500"] * 4
    assert parsed[0]["eta"] == "4 s" and parsed[2]["eta"] == "0 s" and parsed[3]["eta"] is None


def test_moveto_sets_absolute_counts_and_an_unknown_eta_is_said():
    clock, stream = Clock(), io.StringIO()
    shown = ProgressStyle(stream=stream, every=0, clock=clock).start(4, "bricks", "derive")
    clock.now += 5
    shown.moveto(0, 0)
    shown.moveto(2, 50)
    shown.moveto(3)  # rows unchanged
    lines = _lines(stream)
    assert lines[0].endswith("ETA unknown")
    assert [LINE.match(line)["done"] for line in lines] == ["0", "2", "3"]
    assert [LINE.match(line)["rows"] for line in lines] == ["0", "50", "50"]
    assert LINE.match(lines[2])["eta"] == "2 s"  # 3 of 4 bricks in 5 s, no row total: by bricks


def test_silent_unless_asked(capsys):
    for progress in (False, None):
        with start_progress(progress, 5, "bricks", "derive") as shown:
            shown.update(5, rows=10)
        assert shown.mode == "silent" and (shown.done, shown.rows) == (5, 10)
    assert capsys.readouterr() == ("", "")
    with start_progress(True, 2, "bricks", "simulate") as shown:  # True: stderr, default style
        shown.update(2)
    assert shown.mode == "lines" and shown.style.every == DEFAULT_EVERY
    assert LINE.match(capsys.readouterr().err.strip())["done"] == "2"


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm import tqdm

    stream = Terminal()
    with ProgressStyle(stream=stream, every=30).start(3, "bricks", "simulate") as shown:
        assert shown.mode == "bar" and isinstance(shown._bar, tqdm)
        for _ in range(3):
            shown.update(1, rows=200)
    text = stream.getvalue()
    assert "\r" in text and "simulate" in text and "3/3" in text and "100%" in text and "600 rows" in text
    # forced either way, whatever the stream
    assert ProgressStyle(stream=io.StringIO(), bar=True).start(1, "rows", "x").mode == "bar"
    assert ProgressStyle(stream=Terminal(), bar=False).start(1, "rows", "x").mode == "lines"


def test_a_negative_interval_is_refused():
    with pytest.raises(InputError, match="`every`"):
        ProgressStyle(every=-1)
    with pytest.raises(InputError):
        ProgressStyle(every=float("nan"))


# ------------------------------------------------------------------------------- the CLI

# work that goes through no rows (plot's figures): the counts and the item being worked on
ITEM_LINE = re.compile(r"^(?P<desc>[\w-]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \((?P<percent>\d+)%\)"
                       r"(, (?P<item>[^,]+))?, elapsed [^,]+, (ETA (?P<eta>.+)|finished)$")


def _progress_lines(err, desc, unit=None):
    lines = [line for line in err.splitlines() if line.startswith(f"{desc}: ")]
    if unit is not None:
        return [ITEM_LINE.match(line).groupdict() for line in lines if f" {unit} (" in line]
    return [LINE.match(line).groupdict() for line in lines]


def test_cli_simulate_shows_bricks_in_a_log_and_quiet_silences_it(tmp_path, capsys):
    assert cli.main(["simulate", "-o", str(tmp_path / "a"), "--n-bricks", "3", "--per-rsdir", "20", "--processes", "1",
                     "--progress-every", "0"]) == 0
    lines = _progress_lines(capsys.readouterr().err, "simulate")
    assert [line["done"] for line in lines] == ["1", "2", "3", "3"]
    assert all(line["total"] == "3" and line["unit"] == "bricks" for line in lines)
    import fitsio

    # rows: the randoms written to the truth table (injected ones and those off the CCDs)
    assert lines[-1]["rows"] == str(fitsio.read_header(str(tmp_path / "a" / "randoms.fits"), 1)["NAXIS2"])
    assert cli.main(["simulate", "-o", str(tmp_path / "b"), "--n-bricks", "3", "--per-rsdir", "20", "--processes", "1",
                     "--progress-every", "0", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_export_shows_rows_read(dr5_derived, tmp_path, capsys):
    import obiwan_h5

    with obiwan_h5.open(dr5_derived) as derived:
        ranges = derived.brick_ranges()  # rows of the done bricks
    done_rows = sum(stop - start for start, stop in ranges)
    batches = sum(-(-(stop - start) // 500) for start, stop in ranges)
    for suffix in ("fits", "parquet"):
        assert cli.main(["export", dr5_derived, "-o", str(tmp_path / f"x.{suffix}"), "--columns", "ra,dec",
                         "--where", "obiwan_mask & 1", "--batch-rows", "500", "--progress-every", "0"]) == 0
        lines = _progress_lines(capsys.readouterr().err, "export")
        # every row of the done bricks is read (the filter keeps fewer)
        assert len(lines) == batches + 1 and batches > 1
        assert all(line["total"] == str(done_rows) and line["unit"] == "rows" for line in lines)
        assert lines[-1]["done"] == str(done_rows) and lines[-1]["eta"] is None
    assert cli.main(["export", dr5_derived, "-o", str(tmp_path / "q.fits"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_validate_subset_and_plot_show_progress(dr5_derived, tmp_path, capsys):
    import h5py

    with h5py.File(dr5_derived, "r") as handle:
        done = handle["bricks/status"][:] == 1
        bricks, rows = int(done.sum()), int(handle["bricks/count"][done].sum())
    assert cli.main(["validate", dr5_derived, "--progress-every", "0"]) == 0
    lines = _progress_lines(capsys.readouterr().err, "validate")
    assert lines and lines[-1]["done"] == lines[-1]["total"] == str(bricks) and lines[-1]["rows"] == str(rows)
    assert cli.main(["validate", dr5_derived, "--quiet", "--progress-every", "0"]) == 0
    assert capsys.readouterr() == ("", "")  # -q of validate: nothing at all for a valid file
    assert cli.main(["subset", dr5_derived, "-o", str(tmp_path / "s.h5"), "--columns", "ra,dec,unique_id",
                     "--progress-every", "0"]) == 0
    lines = _progress_lines(capsys.readouterr().err, "subset")
    with h5py.File(dr5_derived, "r") as handle:
        all_rows = int(handle["bricks/count"][:].sum())  # a subset copies the rows of every kept brick
    done = [int(line["done"]) for line in lines]
    assert done == sorted(done) and {1, 2, 3} <= set(done) and lines[-1]["unit"] == "columns"
    # the rows of the new file copied so far (not rows times columns)
    assert lines[-1]["total"] == "3" and lines[-1]["rows"] == str(all_rows)
    assert cli.main(["plot", dr5_derived, "-o", str(tmp_path / "fig"), "--only", "recovery,skymap",
                     "--progress-every", "0"]) == 0
    err = capsys.readouterr().err
    lines = _progress_lines(err, "plot", "rows")
    assert lines[-1]["done"] == lines[-1]["total"] == str(rows)
    # then the drawing, figure by figure: k/n figures and the one being drawn
    figures = _progress_lines(err, "plot", "figures")
    assert [(line["done"], line["item"]) for line in figures] == [
        ("0", "drawing recovery"), ("1", None), ("1", "drawing skymap"), ("2", None), ("2", None)]
    assert all(line["total"] == "2" for line in figures) and figures[-1]["eta"] is None


def test_item_lines_count_no_rows():
    stream, clock = io.StringIO(), Clock()
    with ProgressStyle(stream=stream, every=0, clock=clock).start(2, "figures", "plot", counts_rows=False) as shown:
        shown.update(0, item="drawing a")
        clock.now += 3
        shown.update(1)
    lines = _lines(stream)
    assert lines[0] == "plot: 0/2 figures (0%), drawing a, elapsed 0 s, ETA unknown"
    assert lines[1] == "plot: 1/2 figures (50%), elapsed 3 s, ETA 3 s"
    assert lines[-1] == "plot: 1/2 figures (50%), elapsed 3 s, finished"
    terminal = Terminal()
    with ProgressStyle(stream=terminal).start(2, "figures", "plot", counts_rows=False) as shown:
        shown.update(0, item="drawing residuals")
        assert "drawing residuals" in terminal.getvalue() and "rows" not in terminal.getvalue()


def test_cli_refuses_a_negative_interval_naming_the_flag(dr5_derived, capsys):
    assert cli.main(["validate", dr5_derived, "--progress-every", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "obiwan-h5 validate: error: --progress-every must be >= 0" in err[0]
