"""The errors warmgate raises on purpose, and the exit codes the CLI maps them to.

Hierarchy::

    WarmgateError               anything warmgate reports as one clear sentence
     ├── ConfigError            the configuration or command line is wrong      -> exit 2
     │    └── TemplateError     a request template does not compile or render   -> exit 2
     ├── StatusDirError         the status directory cannot be written or read  -> exit 2
     ├── ServeError             the endpoint cannot listen (port taken)          -> exit 2
     └── NotReadyError          the gate failed closed (on_timeout: fail)       -> exit 1

Ctrl-C outside a warm-up (which handles SIGINT itself) exits 130, as in shells.

Messages are full sentences that name the field or target and say how to fix it. They never
contain secrets: URLs are redacted before they reach a message. Only :mod:`warmgate.cli.main`
turns these into exit codes.
"""

from __future__ import annotations

EXIT_OK = 0
"""Warm, or opened on timeout (fail open)."""
EXIT_NOT_READY = 1
"""Failed closed, or ``check`` found the gate not ready."""
EXIT_USAGE = 2
"""Bad configuration or usage."""
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C where no warm-up handles SIGINT itself: 128 + SIGINT, as in shells."""


class WarmgateError(Exception):
    """Base class: an error warmgate explains in one sentence."""

    exit_code = EXIT_USAGE


class ConfigError(WarmgateError):
    """The configuration, environment or flags are invalid."""


class TemplateError(ConfigError):
    """A request template failed to compile, or failed when rendered at start-up."""


class StatusDirError(WarmgateError):
    """The status directory is missing, not a directory, or not writable."""


class ServeError(WarmgateError):
    """The readiness endpoint cannot listen (the port is taken, the address is wrong)."""


class NotReadyError(WarmgateError):
    """The gate did not open and the configuration says to fail closed."""

    exit_code = EXIT_NOT_READY
