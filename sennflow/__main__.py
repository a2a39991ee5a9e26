"""``python -m sennflow``: the ``sennflow`` console script."""

import sys

from sennflow.cli import main

sys.exit(main())
