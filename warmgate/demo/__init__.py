"""``warmgate demo``: a simulated cold app server, and the tour that warms it with the gate.

Rule: sits beside ``kube/`` and ``paths/``, above ``runtime/``; never imports ``cli/`` nor typer.
"""
