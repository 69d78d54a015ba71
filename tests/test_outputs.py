"""`obiwan_h5.outputs`: unique, locked partials renamed into place; stale ones cleaned, live
ones never; one-line failures of the place; only regular files read."""

import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from obiwan_h5.errors import InputError, OutputError, UnreadableFileError
from obiwan_h5.outputs import (
    Partial,
    check_output,
    check_output_name,
    check_regular_file,
    clean_stale_partials,
    place_problem,
    reserve_space,
    stale_partials,
    write_failure,
    writing,
)


def _hidden(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def test_a_partial_is_unique_beside_the_output_and_renamed_only_when_complete(tmp_path):
    output = tmp_path / "x.h5"
    with writing(str(output)) as first, writing(str(output)) as second:
        assert first.path != second.path
        assert os.path.dirname(first.path) == str(tmp_path)
        assert os.path.basename(first.path).startswith(".x.h5.partial-")
        with open(first.path, "w") as handle:
            handle.write("first")
        with open(second.path, "w") as handle:
            handle.write("second")
        assert not output.exists()  # nothing under the output's name until complete
    assert output.read_text() == "first"  # the outer block finished last
    assert _hidden(tmp_path) == []
    # the mode a plain open gives, not mkstemp's private 0600
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(output).st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_block_leaves_nothing_and_keeps_the_old_output(tmp_path):
    output = tmp_path / "x.fits"
    output.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with writing(str(output)) as partial:
            with open(partial.path, "w") as handle:
                handle.write("new, half written")
            raise RuntimeError("boom")
    assert output.read_text() == "old" and _hidden(tmp_path) == []


def test_a_full_disk_in_the_block_is_one_output_error(tmp_path):
    output = str(tmp_path / "x.parquet")
    with pytest.raises(OutputError) as caught:
        with writing(output):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value) == f"{output}: cannot write: no space left on device; free space (or choose another " \
                                "place) and run again"
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("err, text", [
    (OSError(errno.EDQUOT, "x"), "disk quota exceeded"),
    (OSError(errno.ENAMETOOLONG, "x"), "file name too long"),
    (OSError(errno.EROFS, "x"), "read-only file system"),
    # h5py turns some HDF5 write failures into RuntimeErrors that keep only HDF5's text
    (RuntimeError("Unable to flush dataset (file write failed: ..., errno = 28, error message = 'No space')"),
     "no space left on device"),
])
def test_failures_of_the_place_are_named(tmp_path, err, text):
    failure = write_failure(str(tmp_path / "out.h5"), err)
    assert isinstance(failure, OutputError) and text in str(failure)


@pytest.mark.parametrize("err, text", [
    (OSError(errno.EDQUOT, "x"), "disk quota exceeded"),
    ("Can't write data (file write failed: time = ..., errno = 28, error message = 'No space left on device')",
     "no space left on device"),
    # what HDF5 hands h5py when an object it frees cannot be flushed: the system's text only
    ("Unable to flush the cache (No space left on device)", "no space left on device"),
    ("Problems closing file (Disk quota exceeded)", "disk quota exceeded"),
    (RuntimeError("Can't write data (Read-only file system)"), "read-only file system"),
    ("Can't write data (bad chunk index)", None),
    (OSError(errno.EACCES, "Permission denied"), None),
])
def test_the_place_is_named_from_an_error_or_its_text(err, text):
    """One home for the names of the place's failures: the derive job's writer words its
    own message (`resume` advice) around them."""
    assert place_problem(err) == text


def test_other_failures_are_not_taken_for_the_place(tmp_path):
    assert write_failure(str(tmp_path / "out.h5"), OSError(errno.EACCES, "x")) is None
    assert write_failure(str(tmp_path / "out.h5"), KeyError("x")) is None
    assert write_failure(str(tmp_path / "out.h5"), RuntimeError("no errno here")) is None


def test_a_live_partial_is_never_cleaned_a_dead_one_always(tmp_path):
    output = str(tmp_path / "x.h5")
    live = Partial.create(output)
    live_dir = Partial.create(str(tmp_path / "figures"), directory=True)
    dead = tmp_path / ".x.h5.partial-abcd1234"  # as a killed run leaves it: nobody holds it
    dead.write_text("left by kill -9")
    other = tmp_path / ".y.h5.partial-abcd1234"  # another output's
    other.write_text("not ours")
    assert stale_partials(output) == [str(dead)]
    clean_stale_partials(output)
    clean_stale_partials(str(tmp_path / "figures"))
    assert os.path.exists(live.path) and os.path.isdir(live_dir.path)
    assert not dead.exists() and other.exists()
    live.discard()
    live_dir.discard()
    assert not os.path.exists(live.path) and not os.path.exists(live_dir.path)


def test_a_partial_left_by_a_killed_process_is_cleaned_by_the_next_run(tmp_path):
    output = str(tmp_path / "x.h5")
    script = textwrap.dedent(f"""
        import os, signal, sys
        from obiwan_h5.outputs import Partial
        partial = Partial.create({output!r})
        print(partial.path, flush=True)
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.stdin.read()  # holds the partial until told to end
    """)
    killed = subprocess.run([sys.executable, "-c", script, "kill"], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    left = killed.stdout.strip()
    holder = subprocess.Popen([sys.executable, "-c", script, "hold"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        held = holder.stdout.readline().strip()
        assert os.path.exists(left) and os.path.exists(held)
        with writing(output) as partial:  # the next run on the output
            with open(partial.path, "w") as handle:
                handle.write("done")
        assert not os.path.exists(left)  # the dead run's partial is gone
        assert os.path.exists(held)  # the concurrent run's is not
    finally:
        holder.communicate("", timeout=120)
    assert open(output).read() == "done"
    clean_stale_partials(output)  # its writer has ended: now it is stale
    assert _hidden(tmp_path) == []


def test_a_directory_output_is_built_aside_and_merged_into_an_existing_one(tmp_path):
    output = tmp_path / "figures"
    with writing(str(output), directory=True) as partial:
        (tmp_path / os.path.basename(partial.path) / "a.png").write_text("1")
        assert not output.exists()
    assert (output / "a.png").read_text() == "1"
    (output / "notes.txt").write_text("mine")
    with writing(str(output), directory=True) as partial:
        with open(os.path.join(partial.path, "a.png"), "w") as handle:
            handle.write("2")
    assert (output / "a.png").read_text() == "2" and (output / "notes.txt").read_text() == "mine"
    assert _hidden(tmp_path) == []


def test_long_output_names_get_short_partials_and_too_long_ones_are_refused(tmp_path):
    name = "x" * 248 + ".h5"  # fits the file system's 255 bytes; name + ".partial-XXXXXXXX" would not
    output = str(tmp_path / name)
    with writing(output) as partial:
        assert len(os.path.basename(partial.path)) <= 255
        with open(partial.path, "w") as handle:
            handle.write("ok")
    assert open(output).read() == "ok"
    check_output_name(output)
    with pytest.raises(InputError, match="256 bytes, more than the 255"):
        check_output_name(str(tmp_path / ("y" * 253 + ".h5")))


def test_reserve_space_holds_room_or_says_there_is_none(tmp_path):
    reserve = reserve_space(str(tmp_path / "x.h5"), 1 << 20)
    assert os.stat(reserve.path).st_blocks * 512 >= 1 << 20
    reserve.discard()
    assert _hidden(tmp_path) == []
    with pytest.raises(OutputError, match="no space left|too large"):
        reserve_space(str(tmp_path / "x.h5"), 1 << 62)
    assert _hidden(tmp_path) == []


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "f.h5"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="f.h5: is not a regular file"):
        check_regular_file(str(fifo))
    with pytest.raises(InputError, match="linked data file is not a regular file"):
        check_regular_file(str(fifo), "linked data file")
    with pytest.raises(InputError, match="is a directory"):
        check_regular_file(str(tmp_path))
    with pytest.raises(InputError, match="not found"):
        check_regular_file(str(tmp_path / "missing.h5"))
    with pytest.raises(InputError, match="not a regular file"):
        check_regular_file("/dev/null")


def test_reserve_space_without_posix_fallocate_writes_its_blocks(tmp_path, monkeypatch):
    """As on macOS, which has no posix_fallocate."""
    monkeypatch.delattr(os, "posix_fallocate")
    reserve = reserve_space(str(tmp_path / "x.h5"), 3 << 20)
    assert os.path.getsize(reserve.path) == 3 << 20 and os.stat(reserve.path).st_blocks * 512 >= 3 << 20
    reserve.discard()


def test_check_output_refuses_what_no_command_may_write(tmp_path):
    """The one output check of every command, derive's too."""
    source = tmp_path / "in.h5"
    source.write_text("")
    os.link(source, tmp_path / "same.h5")  # the input under another name
    with pytest.raises(InputError, match=r"same.h5: is an input of this command \(.*in.h5\)"):
        check_output(str(tmp_path / "same.h5"), True, inputs=[str(source)])
    with pytest.raises(InputError) as refused:
        check_output(str(source), True, inputs=[str(source)], inputs_of="the job")
    assert str(refused.value) == f"{source}: is an input of the job; choose another output name"
    with pytest.raises(InputError, match="exists; use `overwrite` to replace it"):
        check_output(str(source), False)
    with pytest.raises(InputError, match="is a directory; give the path of the file to write"):
        check_output(str(tmp_path), True)
    with pytest.raises(InputError, match="exists and is not a directory"):
        check_output(str(source), True, directory=True)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match="exists and is not a regular file"):
        check_output(str(tmp_path / "fifo"), True)
    with pytest.raises(InputError, match="output directory does not exist"):
        check_output(str(tmp_path / "missing" / "x.h5"), False)
    check_output(str(source), True)
    check_output(str(tmp_path), False, directory=True)


def test_the_package_errors_leave_writing_as_they_are(tmp_path, monkeypatch):
    """An error of the package raised inside `writing` says what is wrong already: even on
    a nearly full disk (where a writer that lost errno is taken to have run out of space)
    it is not turned into "no space left"."""
    import obiwan_h5.outputs as outputs

    monkeypatch.setattr(outputs, "_nearly_full", lambda directory: True)
    with pytest.raises(UnreadableFileError, match="^in.h5: not a readable HDF5 file$"):
        with writing(str(tmp_path / "x.h5")):
            raise UnreadableFileError("in.h5: not a readable HDF5 file")
    assert write_failure(str(tmp_path / "x.h5"), OSError("cfitsio lost errno")) is not None  # the rule stays
    assert _hidden(tmp_path) == []

