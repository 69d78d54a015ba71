"""Names and paths of an obiwan production (docs/concepts.md).

Everything that turns a brick name or an rsdir into a path lives here, so that the
simulator that writes a production and the job that reads one cannot disagree.
Brick names are validated before they are ever joined into a path.
"""

import os
import re

from ..errors import InputError
from ..fileformat import check_brickname
from ..listfiles import read_brick_list

__all__ = ["RSDIR_RE", "Production", "read_brick_list", "rsdir_sort_key", "sort_rsdirs"]

RSDIR_RE = re.compile(r"^(rs|skip_rs|more_rs|more_skip_rs)(\d+)$", re.ASCII)
# canonical order of the rsdir classes (docs/concepts.md, rsdirs)
RSDIR_CLASSES = ("rs", "skip_rs", "more_rs", "more_skip_rs")


def rsdir_sort_key(rsdir):
    """Sort key giving the canonical rsdir order: by class, then by number, then by name."""
    match = RSDIR_RE.match(rsdir)
    if match is None:
        raise InputError(f"{rsdir!r} is not an rsdir name (rs<N>, skip_rs<N>, more_rs<N>, more_skip_rs<N>)")
    # the name itself breaks ties (rs01 and rs1), so the order is total and reproducible
    return RSDIR_CLASSES.index(match.group(1)), int(match.group(2)), rsdir


def sort_rsdirs(rsdirs):
    """Return the rsdir names in canonical order."""
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
        """``obiwan/<bri>/<brick>/`` of the brick, or its rsdir under it."""
        parts = [self.data_dir, "obiwan", brickname[:3], check_brickname(brickname)]
        return os.path.join(*parts, rsdir) if rsdir else os.path.join(*parts)

    def tractor_dir(self, brickname, rsdir):
        """``tractor/<bri>/<brick>/<rsdir>/``: the Tractor catalog of one rsdir."""
        return os.path.join(self.data_dir, "tractor", brickname[:3], check_brickname(brickname), rsdir)

    def simcat(self, brickname, rsdir):
        """The injected sources of one rsdir (``simcat-<objtype>-<brick>.fits``)."""
        return os.path.join(self.obiwan_dir(brickname, rsdir), f"simcat-{self.objtype}-{brickname}.fits")

    def ids_added(self, brickname, rsdir):
        """The ids of the sources actually injected in one rsdir (``sim_ids_added.fits``)."""
        return os.path.join(self.obiwan_dir(brickname, rsdir), "sim_ids_added.fits")

    def skipped_ids(self, brickname, rsdir):
        """The ids skipped in one rsdir (``skippedids-<objtype>-<brick>.fits``)."""
        return os.path.join(self.obiwan_dir(brickname, rsdir), f"skippedids-{self.objtype}-{brickname}.fits")

    def metacat(self, brickname, rsdir):
        """The run's metadata catalog of one rsdir (``metacat-<objtype>-<brick>.fits``)."""
        return os.path.join(self.obiwan_dir(brickname, rsdir), f"metacat-{self.objtype}-{brickname}.fits")

    def tractor(self, brickname, rsdir):
        """The Tractor catalog measured on one rsdir's images (``tractor-<brick>.fits``)."""
        return os.path.join(self.tractor_dir(brickname, rsdir), f"tractor-{brickname}.fits")

    def dr_tractor(self, brickname):
        """The real data release's Tractor catalog of the brick (in `dr_dir`)."""
        return os.path.join(self.dr_dir, "tractor", brickname[:3], f"tractor-{check_brickname(brickname)}.fits")

    def rsdirs(self, brickname):
        """The rsdirs present for a brick, in canonical order (unknown names ignored)."""
        try:
            entries = os.listdir(self.obiwan_dir(brickname))
        except FileNotFoundError:
            return []
        return sort_rsdirs([name for name in entries if RSDIR_RE.match(name)])
