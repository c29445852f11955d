"""`python -m roadie.demo [--small] [...]` is `roadie demo`."""

import sys

from roadie.cli import main

sys.exit(main(["demo", *sys.argv[1:]]))
