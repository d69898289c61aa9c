"""What warmgate shows: the status directory, the readiness and metrics endpoint, its
connection limits, the metrics, the logs and the live view.

Rule: imports ``traffic/``, ``config/``, ``decide/`` and ``kernel/`` only; never ``report/``
(its sibling) nor anything above.
"""
