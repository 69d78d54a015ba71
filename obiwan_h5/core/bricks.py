"""Brick lists parsed from text, and the default seed of brick samples: pure, no file.

`parse_brick_names` is the one parser of brick lists for every command and function that
takes `bricks` (derive, simulate, subset, export, maps, plot): each name is checked against
the brick-name pattern before it can reach a path, and errors name the file and line.
Reading the text of a list file or of standard input is `obiwan_h5.listfiles`'s.
"""

from ..errors import InputError
from ..fileformat import brickname_problem

__all__ = ["DEFAULT_SEED", "parse_brick_names"]

# the seed of brick samples (subset, plot) and of simulated productions when none is
# given: the same command then picks the same bricks and writes the same files
DEFAULT_SEED = 1


def parse_brick_names(lines, source=None):
    """Brick names from text lines (comma or space separated), unique, in the order given.

    Parameters
    ----------
    lines : list of str
    source : str, optional
        File the lines come from, named in errors with the line number.
    """
    names = {}  # a dict keeps the order given and finds a repeat in constant time
    for number, line in enumerate(lines, 1):
        for token in line.replace(",", " ").split():
            if token in names:
                continue
            problem = brickname_problem(token)
            if problem:
                raise InputError(f"{source}:{number}: {problem}" if source else f"`bricks`: {problem}")
            names[token] = None
    if not names:
        raise InputError(f"{source or '`bricks`'}: the brick list is empty")
    return list(names)
