"""``python -m mixgan``: the workflow's command line."""

import sys

from mixgan.cli import main

sys.exit(main())
