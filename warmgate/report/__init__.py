"""The warm-up report: the record of what happened, its renderings (text, SVG, HTML) and the
files they go to.

Rule: imports ``decide/`` and ``kernel/`` only (below ``traffic/`` and ``config/`` too); never
``serve/``, its sibling: the report logs nothing.
"""
