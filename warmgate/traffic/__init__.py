"""The warm-up traffic: the load generator, the compiled targets, templates, URL sets, TLS
loading, and the HTTP (``web/``) and SQL (``sql/``) drivers that turn one planned request into
one outcome.

Rule: imports ``config/``, ``decide/`` and ``kernel/`` only.
"""
