"""``python -m rawprobe``."""

import sys

try:
    from .cli import run
except KeyboardInterrupt:  # Ctrl-C while starting: nothing was done
    sys.stderr.write("rawprobe: interrupted\n")
    sys.exit(130)

run()
