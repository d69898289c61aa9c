"""How one request can end: the closed set of outcome labels every layer speaks.

A driver returns one of these for each request; the window counts them, the checks name them
in reasons ("18% of answers were 404"), and the metrics label requests with them, so the set
is bounded and the same everywhere.
"""

from __future__ import annotations

OK = "ok"
UNEXPECTED_STATUS = "unexpected_status"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
ERROR = "error"
WRITE_REJECTED = "write_rejected"
CAPTURE_FAILED = "capture_failed"
"""A journey step's capture found no value in the answer."""
OUTCOMES = (OK, UNEXPECTED_STATUS, TIMEOUT, CONNECTION_ERROR, ERROR, WRITE_REJECTED, CAPTURE_FAILED)
"""Every outcome label a driver may return: a bounded set, so metrics labels stay bounded."""
