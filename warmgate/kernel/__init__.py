"""The kernel: errors and exit codes, units, secrets and their redaction, files.

Rule: imports the standard library only. Every other subpackage may import it.
"""
