"""The command line: the only user of typer, and the only place errors become exit codes.

Rule: may import every other subpackage; none imports it. Commands import what does their work
only when they run.
"""
