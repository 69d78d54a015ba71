"""`obiwan-h5 info`: what a derived file (or a view or subset of one) holds.

    obiwan-h5 info derived.h5                   rows, bricks by status, creation attributes
    obiwan-h5 info derived.h5 --list-columns    ... and every column: dtype, shape, unit, description
    obiwan-h5 info derived.h5 --list-bricks     ... and every brick: name, status, rows, message
    obiwan-h5 info derived.h5 --json            everything, as one JSON document

Only metadata and the brick index are read, never the rows, so it is instant on any size.
"""

import os

import numpy as np

from ..fileformat import STATUS_NAMES
from .common import linked_files, open_derived

__all__ = ["describe", "format_text"]

def describe(path, bricks=False):
    """Everything `info` reports, as JSON-ready Python values.

    Parameters
    ----------
    path : str
    bricks : bool
        Also list every brick (``brick_list``: name, status, offset, rows, message).

    Returns
    -------
    dict
        ``path``, ``size_bytes``, ``rows``, ``bricks`` (``total`` and, per status name,
        ``{"bricks", "rows"}``), ``columns`` (name, dtype, shape, unit, description),
        ``summary_columns``, ``linked_files`` (for a view: the files holding its data and
        their sizes), ``attributes`` (every root attribute, JSON ones decoded).
    """
    with open_derived(path) as derived:
        index = derived.bricks
        columns = []
        for name in derived.columns:
            column = derived.column_info(name)
            columns.append({"name": name, "dtype": _dtype_name(column["dtype"]),
                            "shape": list(column["shape"]), "unit": column["unit"],
                            "description": column["description"]})
        attributes = {key: _plain(value) for key, value in derived.attrs.items()}
        status = index["status"]
        by_status = {}
        for code, name in STATUS_NAMES.items():
            chosen = status == code
            by_status[name] = {"bricks": int(chosen.sum()), "rows": int(index["count"][chosen].sum())}
        unknown = ~np.isin(status, list(STATUS_NAMES))
        if unknown.any():
            by_status["unknown status"] = {"bricks": int(unknown.sum()), "rows": int(index["count"][unknown].sum())}
        facts = {
            "path": path,
            "size_bytes": os.path.getsize(path),
            "rows": int(derived.nrows),
            "bricks": {"total": len(derived.bricknames), **by_status},
            "columns": columns,
            "summary_columns": list(derived.summary_columns),
            "linked_files": _linked_files(path),
            "attributes": attributes,
        }
        if bricks:
            facts["brick_list"] = [
                {"name": name, "status": STATUS_NAMES.get(int(code), f"unknown ({int(code)})"),
                 "offset": int(offset), "rows": int(count), "message": message.decode("utf-8", "replace").rstrip("\0")}
                for name, code, offset, count, message in zip(derived.bricknames, status, index["offset"],
                                                               index["count"], index["message"])]
    return facts


def _dtype_name(dtype):
    dtype = np.dtype(dtype)
    return f"S{dtype.itemsize}" if dtype.kind == "S" else dtype.name


def _plain(value):
    """Attribute value as a JSON-serialisable Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _linked_files(path):
    """``[{"file", "resolved", "exists", "size_bytes"}]``: the files a view's links point to."""
    found = []
    for name, resolved in linked_files(path):
        exists = os.path.exists(resolved)
        found.append({"file": name, "resolved": resolved, "exists": exists,
                      "size_bytes": os.path.getsize(resolved) if exists else None})
    return found


def _size(nbytes):
    if nbytes is None:
        return "missing"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def format_text(facts, columns=False, columns_hint=""):
    """The readable report of `describe`'s facts.

    Parameters
    ----------
    facts : dict
        What `describe` returned.
    columns : bool
        Also list every column (dtype, shape, unit, description).
    columns_hint : str
        Said after the column counts when the columns are not listed: how the caller's
        interface lists them.
    """
    attrs = facts["attributes"]
    lines = [f"{facts['path']}  ({_size(facts['size_bytes'])})"]

    def row(label, value):
        lines.append(f"  {label:<17}{value}")

    version = attrs.get("format_version", "?")
    row("format", f"{attrs.get('format', '?')} version {version}, written by obiwan_h5 "
                  f"{attrs.get('software_version', '?')}")
    created = attrs.get("creation_time", "?")
    if "nranks" in attrs:
        created += f" on {attrs['nranks']} rank(s)"
    if attrs.get("elapsed_s") is not None:
        created += f" in {attrs['elapsed_s']:.1f} s"
    row("created", created)
    row("command line", attrs.get("command_line", "?") or "?")
    complete = attrs.get("complete")
    row("complete", "yes" if complete else
        "NO: the job has not finished; only bricks marked done have valid rows")
    if "match_radius_arcsec" in attrs:
        row("match radius", f"{attrs['match_radius_arcsec']} arcsec")
    for link in facts["linked_files"]:
        row("view of", f"{link['file']} ({_size(link['size_bytes'])})")
    history = attrs.get("update_history")
    if isinstance(history, list) and history:
        last = history[-1]
        row("last updated", f"{last.get('time', '?')}: {last.get('added', 0)} brick(s) added, "
                            f"{last.get('rederived', 0)} derived again, {last.get('removed', 0)} removed, "
                            f"{last.get('copied', 0)} copied ({len(history)} update(s) in all; "
                            "attribute update_history)")
    if "subset_of" in attrs:
        how = (f"sample of {attrs['sample_fraction']} of the bricks, seed {attrs['seed']}"
               if "sample_fraction" in attrs else f"bricks: {_shorten(attrs.get('subset_bricks', '?'))}")
        row("subset of", f"{attrs['subset_of']} ({how})")
    row("rows", f"{facts['rows']}")
    bricks = facts["bricks"]
    states = ", ".join(f"{value['bricks']} {name} ({value['rows']} rows)"
                       for name, value in bricks.items() if name != "total" and (value["bricks"] or name == "done"))
    row("bricks", f"{bricks['total']}: {states}")
    hint = f" ({columns_hint})" if columns_hint and not columns else ""
    row("columns", f"{len(facts['columns'])} in randoms, {len(facts['summary_columns'])} in summary{hint}")
    if "brick_list" in facts:
        lines.append("")
        lines.append(f"  {'brick':<9} {'status':<11}{'rows':>9}  message")
        for brick in facts["brick_list"]:
            lines.append(f"  {brick['name']:<9} {brick['status']:<11}{brick['rows']:>9}  {brick['message']}".rstrip())
    if columns:
        width = max((len(column["name"]) for column in facts["columns"]), default=4)
        lines.append("")
        lines.append(f"  {'column':<{width}}  {'dtype':<8} {'shape':<6} {'unit':<14} description")
        for column in facts["columns"]:
            shape = "x".join(str(n) for n in column["shape"]) or "-"
            lines.append(f"  {column['name']:<{width}}  {column['dtype']:<8} {shape:<6} "
                         f"{column['unit'] or '-':<14} {column['description']}")
    return "\n".join(lines)


def _shorten(text, width=60):
    text = str(text)
    return text if len(text) <= width else text[:width - 3] + "..."
