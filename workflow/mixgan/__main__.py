"""``python -m mixgan``: the workflow's command line (in the run's fork server when it has one:
``mixgan.forkserver``)."""

import sys

from mixgan.forkserver import run_in_server

status = run_in_server(sys.argv[1:])
if status is None:
    from mixgan.cli import main

    status = main()
sys.exit(status)
