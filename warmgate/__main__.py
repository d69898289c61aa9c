"""``python -m warmgate``: the same as the ``warmgate`` command."""

from warmgate.cli.main import main

main()
