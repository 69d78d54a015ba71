"""Every exception and warning obiwan_h5 raises.

Messages are one line, name the file (or the parameter) and the problem, and say what to
do. Library code names *parameters* in backquotes (```overwrite```); the command line
shows them as its flags (``--overwrite``), see `obiwan_h5.cli.options.flag_text`.
"""

__all__ = [
    "BrickError",
    "ExpressionError",
    "FormatError",
    "IncompleteFileWarning",
    "InputError",
    "JobError",
    "ObiwanError",
    "OutputError",
]


class ObiwanError(Exception):
    """Base class of the package's errors."""


class InputError(ObiwanError, ValueError):
    """Bad input: the message names the file (or parameter) and the problem, on one line."""


class BrickError(ObiwanError):
    """One brick cannot be derived; the message becomes its ``bricks/message``."""


class JobError(ObiwanError, RuntimeError):
    """An error every rank agreed on: the job stops cleanly with this message."""


class OutputError(ObiwanError, OSError):
    """The output cannot be written (disk full, quota, IO error): the job must stop; what
    was flushed before stays, and `resume` completes the file once the cause is fixed."""


class FormatError(InputError):
    """A file that claims to be an obiwan_h5 file breaks the format (docs/format.md)."""


class ExpressionError(InputError):
    """A row filter that is not a valid, safe, boolean expression over the columns."""


class IncompleteFileWarning(UserWarning):
    """The job that wrote the file has not finished (its ``complete`` attribute is false)."""
