"""`obiwan-h5 view`: a tiny file exposing chosen columns of a derived file, without copying.

    obiwan-h5 view derived.h5 -o radec.h5 --columns "unique_id,ra,dec,obiwan_mask"

The view holds no data. Its ``randoms`` group has one HDF5 *external link* per chosen
column, and ``bricks`` and ``summary`` are external links to the groups of the input. Every
link names the input by a path *relative to the view's directory*, so the two files can be
moved or copied together (keeping their relative placement) and the view still works,
whatever the current directory of the reader. The view is read exactly like the input:
``obiwan_h5.open``, ``Table.read(..., format="obiwan_h5")`` or plain h5py.

Why external links and not virtual datasets (VDS)? Both resolve a relative file name
against the directory of the file that holds the link (checked on HDF5 1.10.8, see the
tests), but:

* an external link to a missing or moved input raises an error ("unable to open external
  file"), while a VDS whose source file is missing silently reads its fill value — a
  view must never return made-up numbers;
* an external link reaches the input's dataset itself, with its ``description`` and
  ``unit`` attributes and its chunking; a VDS is a new dataset that would need them copied;
* linking a whole group (``bricks``, ``summary``) is one link; VDS exist only for datasets.

HDF5 looks for a relative external-link file name first under the prefixes of the
environment variable ``HDF5_EXT_PREFIX`` and of ``H5Pset_elink_prefix`` (when set), then in
the directory of the file holding the link, then in the current directory.
"""

import logging
import os
import posixpath

import h5py

from .. import __version__
from ..errors import InputError, UnreadableFileError
from ..outputs import PARTIAL_HDF5_LOCKING, check_output, check_regular_file, writing
from .common import MAX_LINK_DEPTH, key_message, new_hdf5, open_derived, utc_now
from .reader import parse_columns

__all__ = ["make_view"]

log = logging.getLogger("obiwan_h5.view")


# -- the view ----------------------------------------------------------------------------


def make_view(path, output, columns, overwrite=False):
    """Write a view of `path` exposing `columns`, linked by relative file names.

    Parameters
    ----------
    path : str
        Derived file, or a view of one (the new view then links to the original data,
        not to the intermediate view).
    output : str
        View file to write (under a partial name, renamed when complete: `outputs.writing`).
    columns : str or list of str
        Names or globs, as for `reader.parse_columns`.
    overwrite : bool

    Returns
    -------
    dict
        ``view_of`` (the link target relative to the view's directory) and ``columns``.

    Raises
    ------
    InputError
        Unreadable input, unknown column, existing output without `overwrite`.
    """
    with open_derived(path) as derived:
        chosen = parse_columns(columns, derived.columns)
    # relative between *real* paths: the OS resolves "dir/../x" physically, so a name
    # made from a symlinked directory's apparent path could point somewhere else
    out_dir = os.path.dirname(os.path.realpath(output))
    with _LinkResolver() as resolver:
        targets = {name: resolver.resolve(path, f"/randoms/{name}") for name in chosen}
        for group in ("bricks", "summary"):
            targets[group] = resolver.resolve(path, f"/{group}")
        data_files = sorted({file for file, _ in targets.values()})
        check_output(output, overwrite, inputs=[path, *data_files])
        with h5py.File(path, "r") as source:
            root_attrs = dict(source.attrs.items())
    relative = {file: os.path.relpath(file, out_dir) for file in data_files}
    with writing(output) as partial:
        with new_hdf5(partial) as view:
            for key, value in root_attrs.items():
                view.attrs[key] = value
            view.attrs["view_of"] = ",".join(relative[file] for file in data_files)
            view.attrs["view_columns"] = ",".join(chosen)
            view.attrs["view_creation_time"] = utc_now()
            view.attrs["view_software_version"] = __version__
            randoms = view.create_group("randoms")
            randoms.attrs["column_order"] = ",".join(chosen)
            for name in chosen:
                file, obj = targets[name]
                randoms[name] = h5py.ExternalLink(relative[file], obj)
            for group in ("bricks", "summary"):
                file, obj = targets[group]
                view[group] = h5py.ExternalLink(relative[file], obj)
        _check_links(partial.path, chosen, output)
    return {"view_of": ",".join(relative[file] for file in data_files), "columns": chosen}


def _check_links(path, chosen, output):
    """Every link of the new view at `path` must reach its object (else `output` is not written)."""
    with h5py.File(path, "r", locking=PARTIAL_HDF5_LOCKING) as view:
        for name in [f"randoms/{column}" for column in chosen] + ["bricks", "summary"]:
            try:
                view[name]
            except KeyError as err:
                raise InputError(f"{output}: link {name} does not resolve ({key_message(err)})") from None


class _LinkResolver:
    """Follows external links to the file and object that hold the data.

    A view of a view then points straight at the original file, and keeps working if the
    intermediate view is deleted. Files are kept open while resolving many columns.
    """

    def __init__(self):
        self._files = {}

    def _open(self, path):
        if path not in self._files:
            check_regular_file(path, "linked data file" if self._files else "file")
            try:
                self._files[path] = h5py.File(path, "r")
            except OSError as err:
                raise UnreadableFileError(f"{path}: not a readable HDF5 file ({err})") from None
        return self._files[path]

    def resolve(self, path, obj):
        """``(real path of the file, object path)`` behind `obj` of file `path`."""
        path = os.path.realpath(path)
        for _ in range(MAX_LINK_DEPTH):
            parent, name = posixpath.split(obj)
            try:
                link = self._open(path)[parent].get(name, getlink=True)
            except KeyError as err:
                raise InputError(f"{path}: cannot open {parent} ({key_message(err)})") from None
            if link is None:
                raise InputError(f"{path}: {obj} is missing")
            if not isinstance(link, h5py.ExternalLink):
                return path, obj
            target = link.filename
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(path), target)
            if not os.path.exists(target):
                raise InputError(f"{path}: {obj} links to {link.filename}, which does not exist")
            path, obj = os.path.realpath(target), link.path
        raise InputError(f"{path}: {obj}: more than {MAX_LINK_DEPTH} nested external links")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self._files.values():
            handle.close()
        self._files.clear()
