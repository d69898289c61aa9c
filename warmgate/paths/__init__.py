"""``warmgate paths``: access logs parsed, counted and turned into a weighted URL set.

Rule: imports ``kernel/`` only, never typer: it returns what it found, and ``cli/`` prints it.
"""
