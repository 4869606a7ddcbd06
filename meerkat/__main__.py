"""`python -m meerkat`: the same as the `meerkat` command."""

from meerkat.cli import main

main()
