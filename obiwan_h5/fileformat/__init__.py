"""The derived file's contract (docs/format.md): group and dataset names, status codes, bit
values, attributes (`layout`) and the column table (`columns`).

Depends only on numpy and `obiwan_h5.errors`; both the job that writes a file and every
reader import their facts from here.
"""

from .columns import *  # noqa: F401,F403
from .layout import *  # noqa: F401,F403
