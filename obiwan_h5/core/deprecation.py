"""Former keyword names of public functions, kept working for one release.

The functions behind the commands take the parameter names of the command-line
vocabulary (``output``, ``bricks``, ``sample``, ``seed``, ``n_bricks``); calls written
for the earlier names still work, with a `DeprecationWarning` that names the new one.
"""

import functools
import sys
import warnings

__all__ = ["renamed_keywords"]


def renamed_keywords(**renames):
    """Decorator: accept each keyword ``old`` of `renames` as its new name ``renames[old]``.

    Parameters
    ----------
    **renames : str
        ``old_name="new_name"`` pairs.

    Notes
    -----
    Giving both names of one parameter is a `TypeError`, as a duplicated keyword is.
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{function.__name__}() got both {old!r} and its new name {new!r}")
                    warnings.warn(f"{function.__name__}(): the keyword {old!r} is deprecated; use {new!r}",
                                  DeprecationWarning, stacklevel=_outside_stacklevel())
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate


def _outside_stacklevel():
    """The `stacklevel` of the first caller outside this package (seen from the wrapper's
    call to `warnings.warn`): a lazy re-export such as `obiwan_h5.plot.make_figures` would
    otherwise get the warning, and Python shows a DeprecationWarning only when it is
    attributed to the user's own code."""
    package = __name__.split(".")[0] + "."
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(package):
        level, frame = level + 1, frame.f_back
    return level
