"""``python -m obiwan_h5 ...``: the `obiwan-h5` command (as typed under ``srun``)."""

import sys

from .cli import main

sys.exit(main())
