"""The derive job (docs/derive.md): options, scan and plan, collective writer, resume.

The only place that imports mpi4py (`mpi`) or opens a file with the ``mpio`` driver
(`writer`). Entry points: `DeriveOptions` and `derive`.
"""

from .derive import derive  # noqa: F401
from .options import DeriveOptions  # noqa: F401
