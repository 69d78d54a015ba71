"""Files in and out: what every command may open, and outputs written whole or not at all.

Inputs. `check_regular_file` refuses, before anything opens it, a path that is not a
regular file: opening a FIFO for reading blocks until a writer comes, a device may never
end. Every reader of the package (derive's inputs and the reading commands) calls it.

Outputs. Every output of every command is built under a *partial* name beside it,
``.<name>.partial-XXXXXXXX`` (created exclusively, so two runs writing the same output
never share one), and renamed to its name only once complete (`Partial.finish`): until
then an existing output is untouched, and a failed run leaves nothing under the output's
name. A directory (the figures of ``plot``) is built the same way.

While its writer lives, a partial is locked (an open-file-description lock on a file, an
``flock`` on a directory; the kernel drops both when the writer dies, even by SIGKILL).
A later run on the same output removes the partials nobody holds (`clean_stale_partials`),
never the live partial of a concurrent run. Files use ``fcntl`` open-file-description
locks (HDF5 takes an ``flock`` of its own on a file it opens, which an ``flock`` of ours
would meet), on one byte far beyond any data (`LOCK_OFFSET`), because MPI-IO takes
``fcntl`` locks on the byte ranges it writes (atomic mode, data sieving), which a lock on
the whole file would block forever; and HDF5 opens a partial with its own locking off
(`PARTIAL_HDF5_LOCKING`), because where ``flock`` is emulated by ``fcntl`` locks (NFS)
HDF5's would meet ours. On a file system without locks, partials are never taken for
stale.

The derive job (`job.output`) builds its file the same way: rank 0 creates and holds the
partial, every rank writes it, rank 0 renames it; a job that fails leaves it (released,
not removed) for ``resume``, which takes it again with `Partial.adopt`.

Before anything is written, `check_output` refuses an output that cannot or must not be
written (an input, a directory, an existing file without ``overwrite``, ...): every
command, derive too, checks its output with it.

Failures of the place rather than of the program (no space, quota, name too long,
read-only file system) become one `OutputError` line naming the output (`write_failure`;
`place_problem` names them for a caller with its own message), and the partial is removed.

This module depends on `errors` only, so that every side (derive, the reading commands,
plot) can use it.
"""

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import struct
import tempfile
import zlib

from .errors import InputError, ObiwanError, OutputError

__all__ = [
    "Partial", "check_free_space", "check_output", "check_output_name", "check_regular_file", "clean_stale_partials",
    "is_same_file", "paths_matching", "place_problem", "plain_mode", "reserve_space", "stale_partials",
    "write_failure", "writing",
]

# the part of a partial's name after the output's name (a reserve: space held for the
# writer, `reserve_space`); mkstemp adds 8 random characters
PARTIAL_MARK, RESERVE_MARK = ".partial-", ".reserve-"
# the unique part `tempfile.mkstemp` puts in a name: files of one output are recognised by
# an exact pattern, so that a run never takes another output's files for its own
# (``a.h5`` and ``a.h5.x.h5`` share the prefix ``.a.h5.``)
UNIQUE_PART = r"[a-z0-9_]{8}"
# errors of the place, not of the program: each is one line naming the output
PLACE_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "file name too long",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large for this file system",
    errno.EIO: "input/output error",
}
FREE_SPACE_ADVICE = "free space (or choose another place) and run again"
# a writer that loses errno on the way up (cfitsio says only "error writing to FITS
# file") failed on a full disk when less than this is left
NEARLY_FULL_BYTES = 1 << 20
_HDF5_ERRNO = re.compile(r"errno = (\d+)")


# ------------------------------------------------------------------------------ inputs

def check_regular_file(path, what="file"):
    """Refuse, without opening it, what is not a regular file: a missing path, a
    directory, a FIFO, a socket or a device (opening a FIFO for reading would block)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} ({err.strerror})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(mode):
        kind = "" if what == "file" else f"{what} "
        raise InputError(f"{path}: {kind}is not a regular file (a FIFO, socket or device)")


# ----------------------------------------------------------------------------- outputs

def _name_max(directory):
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_output_name(output):
    """Refuse an output name longer than its file system allows, before anything is
    written (the error would otherwise come from deep inside a writer)."""
    directory, name = os.path.split(os.path.abspath(output))
    limit = _name_max(directory if os.path.isdir(directory) else "/")
    if len(os.fsencode(name)) > limit:
        raise InputError(f"{output}: the file name has {len(os.fsencode(name))} bytes, more than the {limit} "
                         "this file system allows; choose a shorter name")


def check_output(output, overwrite, inputs=(), directory=False, inputs_of="this command",
                 exists_advice="use `overwrite` to replace it"):
    """Refuse (`InputError`) an output that is one of `inputs` (by path or by inode), whose
    name is too long, that exists without `overwrite` (or is not a regular file: renaming
    over it would replace a FIFO, a device or a dangling link), that is a directory (or,
    with `directory`, the figures of ``plot``, is not one), or whose directory is missing
    or not writable. `inputs_of` and `exists_advice` word the messages: who reads
    `inputs`, and what to do about an existing output.
    """
    for path in inputs:
        if path and is_same_file(path, output):
            shown = "" if os.path.abspath(path) == os.path.abspath(output) else f" ({path})"
            raise InputError(f"{output}: is an input of {inputs_of}{shown}; choose another output name")
    check_output_name(output)
    if os.path.lexists(output):
        mode = os.stat(output).st_mode if os.path.exists(output) else 0
        if directory and not stat.S_ISDIR(mode):
            raise InputError(f"{output}: exists and is not a directory")
        if not directory and stat.S_ISDIR(mode):
            raise InputError(f"{output}: is a directory; give the path of the file to write")
        if not directory and not stat.S_ISREG(mode):
            raise InputError(f"{output}: exists and is not a regular file (a FIFO, socket, device or broken "
                             "link); choose another output name")
        if not directory and not overwrite:
            raise InputError(f"{output}: exists; {exists_advice}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: output directory does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: output directory is not writable")


def is_same_file(path, other):
    """Whether two paths name the same file (resolved path, or same device and inode)."""
    if os.path.realpath(path) == os.path.realpath(other):
        return True
    try:
        return os.path.samestat(os.stat(path), os.stat(other))
    except OSError:
        return False


def _stem(directory, name):
    """The output's name as partials carry it: whole, or, when a partial would be too long
    a name, its start and a hash of the whole (the same for every run on the output)."""
    room = _name_max(directory) - len(".") - len(PARTIAL_MARK) - 8
    raw = os.fsencode(name)
    if len(raw) <= room:
        return name
    digest = f"~{zlib.crc32(raw):08x}"
    return os.fsdecode(raw[: room - len(digest)]) + digest


def _pattern(output, marks=(PARTIAL_MARK, RESERVE_MARK)):
    """The output's directory, the start of its partials' names, and a pattern matching
    the names of its partials of the kinds `marks`."""
    directory, name = os.path.split(os.path.abspath(output))
    stem = re.escape(f".{_stem(directory, name)}")
    kinds = "|".join(re.escape(mark) for mark in marks)
    return directory, f".{_stem(directory, name)}", re.compile(f"{stem}(?:{kinds}){UNIQUE_PART}\\Z")


# The byte of a partial file its writer locks: far beyond the end of any file, so that the
# lock never meets the byte-range locks MPI-IO takes on what it writes (ROMIO locks each
# write's range in atomic mode and for data sieving, with F_SETLKW: a lock of ours on the
# whole file would make every rank, the holder too, wait forever). Locks may lie beyond
# the end of a file; nothing is ever written there.
LOCK_OFFSET = 1 << 62
# the struct flock of an exclusive lock on that byte (l_pid 0, as OFD locks require)
_WRITER_LOCK = struct.pack("hhqqi0q", fcntl.F_WRLCK, os.SEEK_SET, LOCK_OFFSET, 1, 0)
# HDF5 takes an flock of its own on every file it opens. Where flock is emulated by fcntl
# locks on the whole file (NFS: flock(2)), that lock meets the writer's lock on a partial,
# and HDF5 refuses to open the partial ("unable to lock file"), even in the writer's own
# process. A partial is therefore opened with HDF5's locking off (h5py's ``locking``): its
# writer's lock guards it.
PARTIAL_HDF5_LOCKING = False


def _lock(fd, is_dir):
    """Take the writer's lock on `fd`: True; False when another writer holds it; None when
    this file system has no locks."""
    try:
        if is_dir:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif hasattr(fcntl, "F_OFD_SETLK"):
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _WRITER_LOCK)
        else:  # no open-file-description locks (macOS): a process lock
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, LOCK_OFFSET)
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        return None
    return True


def _open_for_lock(path, is_dir):
    return os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if is_dir else os.O_RDWR)


def plain_mode(path, is_dir=False, like=None):
    """Give `path` the mode a plain ``open``/``mkdir`` would give (mkstemp and mkdtemp make
    private ones), or that of the file `like` that it replaces."""
    if like is not None:
        os.chmod(path, stat.S_IMODE(os.stat(like).st_mode))
        return
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if is_dir else 0o666) & ~umask)


class Partial:
    """One output being written: a unique, locked partial beside it.

    Use `writing`, which makes one, finishes it when the block succeeds and discards it
    otherwise; or `create`, then `finish` or `discard`.

    Attributes
    ----------
    output : str
        The final name.
    path : str
        Where to write until `finish`.
    is_dir : bool
        A directory (built with files inside) rather than a file.
    """

    def __init__(self, output, path, fd, is_dir):
        self.output, self.path, self._fd, self.is_dir = output, path, fd, is_dir

    @classmethod
    def create(cls, output, directory=False, mark=PARTIAL_MARK):
        """A new empty partial file (or directory) for `output`, locked."""
        folder, stem, _ = _pattern(output)
        for _ in range(100):
            if directory:
                path = tempfile.mkdtemp(prefix=stem + mark, dir=folder)
            else:
                handle, path = tempfile.mkstemp(prefix=stem + mark, dir=folder)
                os.close(handle)
            fd = _open_for_lock(path, directory)
            # a cleaner may have taken our new partial for stale before we locked it: then
            # it is gone (or locked by the cleaner) and we start again under a new name
            if _lock(fd, directory) is not False and _same_file(path, fd):
                plain_mode(path, directory)
                return cls(output, path, fd, directory)
            os.close(fd)
        raise OutputError(f"{output}: cannot create a partial output beside it")

    @classmethod
    def adopt(cls, output, path):
        """The existing partial `path` of `output` (to complete or remove it), locked; None
        when a live writer holds it or it is gone."""
        is_dir = os.path.isdir(path)
        try:
            fd = _open_for_lock(path, is_dir)
        except OSError:
            return None  # removed meanwhile (another run cleaned it)
        # removed (and its name perhaps reused) between our open and our lock: not ours
        if _lock(fd, is_dir) is False or not _same_file(path, fd):
            os.close(fd)
            return None
        return cls(output, path, fd, is_dir)

    def release_space(self):
        """Give back the space the partial file holds (it is to be discarded), so that a
        writer that must still close it can flush into a file system that was full."""
        if not self.is_dir:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)

    def finish(self):
        """Rename the complete partial to the output; a directory output that exists
        receives the new files (each replaced whole), the others it holds are kept."""
        replaced = self.output if os.path.isfile(self.output) else None
        plain_mode(self.path, self.is_dir, like=replaced)
        if not self.is_dir:
            os.replace(self.path, self.output)
        elif not os.path.isdir(self.output):
            os.rename(self.path, self.output)
        else:
            for name in sorted(os.listdir(self.path)):
                os.replace(os.path.join(self.path, name), os.path.join(self.output, name))
            os.rmdir(self.path)
        self.release()

    def discard(self):
        """Remove the partial (whatever it holds)."""
        with contextlib.suppress(OSError):
            if self.is_dir:
                shutil.rmtree(self.path)
            else:
                os.remove(self.path)
        self.release()

    def release(self):
        """Stop holding the partial and leave it as it is (a failed derive leaves its file
        to ``resume``; a later run takes it for stale). Done by `finish` and `discard`."""
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None


def _same_file(path, fd):
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except OSError:
        return False


def stale_partials(output, marks=(PARTIAL_MARK,), undecided=False):
    """Partials of `output` that no live writer holds (left by a killed run), newest first
    (with `marks` ``(PARTIAL_MARK, RESERVE_MARK)``, their reserves too; with `undecided`,
    also those whose lock cannot be tried: a file system without locks)."""
    directory, _, pattern = _pattern(output, marks)
    found = []
    for path in paths_matching(directory, pattern):
        is_dir = os.path.isdir(path)
        try:
            fd = _open_for_lock(path, is_dir)
        except OSError:
            continue
        try:
            held = _lock(fd, is_dir)  # only a lock we could take proves its writer is gone
            if held or (held is None and undecided):
                found.append((os.fstat(fd).st_mtime, path))
        finally:
            os.close(fd)
    return [path for _, path in sorted(found, reverse=True)]


def paths_matching(directory, pattern):
    """The paths in `directory` whose names match `pattern` (compiled), never a symlink;
    none when the directory cannot be listed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    paths = (os.path.join(directory, name) for name in names if pattern.match(name))
    return [path for path in paths if not os.path.islink(path)]


def clean_stale_partials(output, keep=()):
    """Remove the partials (and reserves) of `output` left by runs that died (never a
    live one)."""
    for path in stale_partials(output, (PARTIAL_MARK, RESERVE_MARK)):
        if path in keep:
            continue
        partial = Partial.adopt(output, path)  # locked while removed: a new writer cannot take it
        if partial is not None:
            partial.discard()


def _place_errno(err):
    """The errno of `err` (an exception, or the text of one) when it names one, else None."""
    code = getattr(err, "errno", None)
    if code is not None:
        return code
    text = str(err)
    # HDF5 reports a failed write as "... errno = 28, error message = ..." (h5py makes
    # some of them RuntimeErrors, without errno)
    found = _HDF5_ERRNO.search(text)
    if found:
        return int(found.group(1))
    # or quotes only the system's text: "... (No space left on device)"
    return next((code for code in PLACE_ERRORS if os.strerror(code) in text), None)


def place_problem(err):
    """The failure of the place that `err` (an exception, or the text of one) reports, as
    a few words (``"no space left on device"``, ``"disk quota exceeded"``, ...), or None."""
    return PLACE_ERRORS.get(_place_errno(err))


def write_failure(output, err, directory=None):
    """`err` as one `OutputError` line naming `output` when the place failed (no space,
    quota, name too long, read-only file system, IO error), else None (a bug, to show)."""
    if isinstance(err, ObiwanError) or not isinstance(err, (OSError, RuntimeError)):
        return None  # the package's own errors already say what is wrong
    code = _place_errno(err)
    if code is None and _nearly_full(directory or os.path.dirname(os.path.abspath(output))):
        code = errno.ENOSPC  # a writer that lost errno on the way up (cfitsio)
    if code not in PLACE_ERRORS:
        return None
    advice = {errno.ENOSPC: "; " + FREE_SPACE_ADVICE,
              errno.EDQUOT: "; free space under your quota (or choose another place) and run again",
              errno.ENAMETOOLONG: "; choose a shorter name"}.get(code, "")
    return OutputError(f"{output}: cannot write: {PLACE_ERRORS[code]}{advice}")


def _nearly_full(directory):
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < NEARLY_FULL_BYTES


def reserve_space(output, nbytes):
    """Hold `nbytes` beside `output`, in a file of its own (a `Partial` to discard), so that
    a writer finds that room when it must finish: HDF5 writes its metadata when the file
    is flushed and, after a failed metadata write, cannot close the file any more (HDF5
    1.10 crashes). Raises `OutputError` when there is not that much room."""
    reserve = Partial.create(output, mark=RESERVE_MARK)
    try:
        _allocate(reserve._fd, int(nbytes))
    except OSError as err:
        reserve.discard()
        raise write_failure(output, err) or err from None
    return reserve


def _allocate(fd, nbytes):
    """Give the file `fd` `nbytes` of real blocks (written zeros where the system has no
    ``posix_fallocate``, as on macOS, or the file system refuses it)."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
        return
    except AttributeError:
        pass
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    block = bytes(1 << 20)
    os.lseek(fd, 0, os.SEEK_SET)
    for start in range(0, nbytes, len(block)):
        os.write(fd, block[: min(len(block), nbytes - start)])
    os.fsync(fd)


def check_free_space(output, nbytes):
    """Refuse, before writing, an output that needs about `nbytes` more than the space left
    beside it (what fits may still fail at the end: `writing` says so)."""
    directory = os.path.dirname(os.path.abspath(output))
    try:
        stats = os.statvfs(directory)
    except OSError:
        return  # cannot tell: the write itself will say
    free = stats.f_bavail * stats.f_frsize
    if int(nbytes) > free:
        raise OutputError(f"{output}: {PLACE_ERRORS[errno.ENOSPC]} (about {nbytes / 2**20:.1f} MiB needed for the "
                          f"output, {free / 2**20:.1f} MiB free in {directory}); {FREE_SPACE_ADVICE}")


@contextlib.contextmanager
def writing(output, directory=False):
    """Write `output` under a new partial (yielded, a `Partial`); rename it into place
    when the block succeeds, remove it otherwise.

    Stale partials of earlier runs on `output` are removed first. A failure of the place
    (`write_failure`) is raised as one `OutputError` line; anything else as it came.
    Close what the block writes before it ends.
    """
    clean_stale_partials(output)
    try:
        partial = Partial.create(output, directory)
    except OSError as err:
        raise write_failure(output, err) or err from None
    try:
        yield partial
        partial.finish()
    except BaseException as err:
        failure = write_failure(output, err)
        partial.discard()
        if failure is not None:
            raise failure from None
        raise
