"""``python -m theory ...`` is ``samat theory ...``."""

import sys

from samat.cli import main

raise SystemExit(main(["theory", *sys.argv[1:]]))
