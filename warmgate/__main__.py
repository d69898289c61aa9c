"""``python -m warmgate``: the same as the ``warmgate`` command."""

from warmgate.cli import main

main()
