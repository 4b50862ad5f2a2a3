"""`python -m pspseg_utils` is the `pspseg` command."""

from pspseg_utils.cli import main

main()
