"""``python -m obiwan_h5.cli``: the `obiwan-h5` command."""

import sys

from . import main

sys.exit(main())
