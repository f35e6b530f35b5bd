"""``python -m rawprobe``."""

import sys

from .cli import main

sys.exit(main())
