"""`python -m bertlearn ...` runs the `bertlearn` command."""

import sys

from .cli import main

sys.exit(main())
