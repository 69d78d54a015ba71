"""Every exception and warning obiwan_h5 raises.

Messages are one line, name the file (or the parameter) and the problem, and say what to
do. Library code names *parameters* in backquotes (```overwrite```); the command line
shows them as its flags (``--overwrite``), see `obiwan_h5.cli.options.flag_text`.

An error is raised as one of these types where it starts, and passed on as it is (never
caught to be raised again as another). Where the package once raised a builtin error,
its type here subclasses that builtin too, so that code catching the builtin still
catches it: `InputError` is a `ValueError`, `UnknownNameError` a `KeyError`,
`UnreadableFileError` an `OSError`, `OutputError` an `OSError`, `JobError` a
`RuntimeError`. docs/architecture.md ("Errors") gives the whole convention.
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
    "UnknownNameError",
    "UnreadableFileError",
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


class UnknownNameError(InputError, KeyError):
    """A column, brick or figure the file (or the package) does not have; the message
    suggests the closest names. Also a `KeyError`, which the reader raised before."""

    # KeyError shows its message quoted, as a key: this is a sentence
    __str__ = Exception.__str__


class UnreadableFileError(InputError, OSError):
    """A file that cannot be read as HDF5 (or as the table it should be): not one, or
    damaged. Also an `OSError`, which the reader raised before."""


class IncompleteFileWarning(UserWarning):
    """The job that wrote the file has not finished (its ``complete`` attribute is false)."""
