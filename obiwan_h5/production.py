"""Names and paths of an obiwan production (SPEC §2).

Everything that turns a brick name or an rsdir into a path lives here, so that the
simulator that writes a production and the job that reads one cannot disagree.
Brick names are validated before they are ever joined into a path.
"""

import os
import re

__all__ = [
    "BRICKNAME_RE",
    "RSDIR_RE",
    "InputError",
    "Production",
    "check_brickname",
    "read_brick_list",
    "rsdir_sort_key",
    "sort_rsdirs",
]

BRICKNAME_RE = re.compile(r"^\d{4}[pm]\d{3}$")
RSDIR_RE = re.compile(r"^(rs|skip_rs|more_rs|more_skip_rs)(\d+)$")
# canonical order of the rsdir classes (SPEC §2)
RSDIR_CLASSES = ("rs", "skip_rs", "more_rs", "more_skip_rs")


class InputError(ValueError):
    """Bad input: the message names the file and the problem, on one line."""


def check_brickname(brickname):
    """Return `brickname` if it is a Legacy Survey brick name, else raise `InputError`.

    Parameters
    ----------
    brickname : str
        Candidate such as ``"1741p242"``: four digits of RA·10, ``p``/``m``, three digits of
        |Dec|·10.
    """
    if not isinstance(brickname, str) or not BRICKNAME_RE.match(brickname):
        raise InputError(f"{brickname!r} is not a brick name (expected e.g. 1741p242)")
    return brickname


def read_brick_list(path):
    """Read a brick list: one name per line, ``#`` comments and blank lines ignored.

    Returns the sorted unique names. Any line that is not a brick name is an error naming
    the file and line, so that nothing from the list can reach a path unchecked.
    """
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read brick list ({err.strerror})") from None
    names = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not BRICKNAME_RE.match(text):
            raise InputError(f"{path}:{number}: {text!r} is not a brick name (expected e.g. 1741p242)")
        names.append(text)
    if not names:
        raise InputError(f"{path}: brick list is empty")
    return sorted(set(names))


def rsdir_sort_key(rsdir):
    """Sort key giving the canonical rsdir order: by class, then by number."""
    match = RSDIR_RE.match(rsdir)
    if match is None:
        raise InputError(f"{rsdir!r} is not an rsdir name (rs<N>, skip_rs<N>, more_rs<N>, more_skip_rs<N>)")
    return RSDIR_CLASSES.index(match.group(1)), int(match.group(2))


def sort_rsdirs(rsdirs):
    """Return the rsdir names in canonical order (SPEC §2)."""
    return sorted(rsdirs, key=rsdir_sort_key)


class Production:
    """Paths of one production tree rooted at `data_dir`.

    Parameters
    ----------
    data_dir : str
        Root holding ``obiwan/`` and ``tractor/``.
    objtype : str
        Injected object type in the file names (``elg``).
    dr_dir : str, optional
        Root of the unmodified data release (``<dr_dir>/tractor/<bri>/tractor-<brick>.fits``);
        default ``<data_dir>/dr``.
    """

    def __init__(self, data_dir, objtype="elg", dr_dir=None):
        self.data_dir = os.fspath(data_dir)
        self.objtype = objtype
        self.dr_dir = os.fspath(dr_dir) if dr_dir is not None else os.path.join(self.data_dir, "dr")

    def obiwan_dir(self, brickname, rsdir=None):
        parts = [self.data_dir, "obiwan", brickname[:3], check_brickname(brickname)]
        return os.path.join(*parts, rsdir) if rsdir else os.path.join(*parts)

    def tractor_dir(self, brickname, rsdir):
        return os.path.join(self.data_dir, "tractor", brickname[:3], check_brickname(brickname), rsdir)

    def simcat(self, brickname, rsdir):
        return os.path.join(self.obiwan_dir(brickname, rsdir), f"simcat-{self.objtype}-{brickname}.fits")

    def ids_added(self, brickname, rsdir):
        return os.path.join(self.obiwan_dir(brickname, rsdir), "sim_ids_added.fits")

    def skipped_ids(self, brickname, rsdir):
        return os.path.join(self.obiwan_dir(brickname, rsdir), f"skippedids-{self.objtype}-{brickname}.fits")

    def metacat(self, brickname, rsdir):
        return os.path.join(self.obiwan_dir(brickname, rsdir), f"metacat-{self.objtype}-{brickname}.fits")

    def tractor(self, brickname, rsdir):
        return os.path.join(self.tractor_dir(brickname, rsdir), f"tractor-{brickname}.fits")

    def dr_tractor(self, brickname):
        return os.path.join(self.dr_dir, "tractor", brickname[:3], f"tractor-{check_brickname(brickname)}.fits")

    def rsdirs(self, brickname):
        """The rsdirs present for a brick, in canonical order (unknown names ignored)."""
        try:
            entries = os.listdir(self.obiwan_dir(brickname))
        except FileNotFoundError:
            return []
        return sort_rsdirs([name for name in entries if RSDIR_RE.match(name)])
