"""One HTTP target's model: the request to repeat, its accepted statuses, timeout and TLS.

:class:`HttpTarget` is a plain target's ``http:`` block and, unchanged, each journey step's
request (:mod:`warmgate.config.journey`). Its URL, header values and body are templates, compiled
and rendered by :mod:`warmgate.traffic.web.driver`; here they are only checked as text. A plain
target is read-only unless it says otherwise (:meth:`HttpTarget.read_only_problem`).

A config model: pydantic, the shared fields and ``kernel/`` only, no I/O.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from warmgate.config.fields import (
    Duration,
    StrictModel,
    checked_http_url,
    header_values,
    positive,
)
from warmgate.config.tls import TlsConfig, needs_https

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class HttpTarget(StrictModel):
    """One HTTP request to repeat. ``url``, header values and ``body`` are templates."""

    url: str | None = Field(
        None, description="URL template, rendered for every request (or give urls_file)."
    )
    urls_file: Path | None = Field(
        None,
        description=(
            "Instead of url: a file of URL templates, one `URL [WEIGHT]` a line (# comments), "
            "as warmgate paths writes it; one is picked by weight for every request."
        ),
    )
    method: str = Field("GET", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Header templates.")
    body: str | None = Field(None, description="Request body template.")
    expect_status: list[int | str] = Field(
        default_factory=lambda: list[int | str](["2xx"]),
        description="Statuses that count as success: numbers or classes such as '2xx'. "
        "May also be written `accept`.",
    )
    timeout: Duration = Field(5.0, description="Per-request timeout; a timeout is a failure.")
    confirm_read_only: bool = Field(
        False,
        description="Allow a method other than GET/HEAD/OPTIONS: the endpoint only reads.",
    )
    tls: TlsConfig | None = Field(None, description="TLS settings of an https URL.")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else checked_http_url(url)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, timeout: float) -> float:
        return positive(timeout, "5s")

    @model_validator(mode="after")
    def _one_url(self) -> HttpTarget:
        if (self.url is None) == (self.urls_file is None):
            raise ValueError(
                "give exactly one of url (one URL template) or urls_file (a file of them)"
            )
        return self

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return header_values(headers, "header")

    @field_validator("method")
    @classmethod
    def _upper_method(cls, method: str) -> str:
        if not re.fullmatch(r"[A-Za-z]+", method):
            raise ValueError(f"'{method}' is not an HTTP method; write GET, HEAD or OPTIONS")
        return method.upper()

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, statuses: list[int | str]) -> list[int | str]:
        if not statuses:
            raise ValueError("list at least one status, such as [200] or ['2xx']")
        for status in statuses:
            valid = (isinstance(status, int) and 100 <= status <= 599) or (
                isinstance(status, str) and re.fullmatch(r"[1-5]xx", status)
            )
            if not valid:
                raise ValueError(f"'{status}' is not a status; write a number such as 200 or '2xx'")
        return statuses

    @model_validator(mode="before")
    @classmethod
    def _accept_is_expect_status(cls, data: object) -> object:
        if isinstance(data, dict) and "accept" in data:
            if "expect_status" in data:
                raise ValueError(
                    "accept and expect_status are the same setting; write only one of them"
                )
            data = {("expect_status" if key == "accept" else key): v for key, v in data.items()}
        return data

    @model_validator(mode="after")
    def _tls_for_https(self) -> HttpTarget:
        if self.urls_file is None:  # a URL set's scheme is known once the file is read
            needs_https(self.url, self.tls)
        return self

    def read_only_problem(self) -> str | None:
        """Why this request may write, unless its method is safe or confirmed read-only.

        Checked by a plain target; a journey step has its own rule (``allow_methods``).
        """
        if self.method not in _SAFE_METHODS and not self.confirm_read_only:
            return (
                f"method {self.method} may change data and warm-up traffic must never write; "
                "use GET, or set confirm_read_only: true if this endpoint only reads"
            )
        return None

    def accepts(self, status: int) -> bool:
        """Whether ``status`` counts as success."""
        for expected in self.expect_status:
            if isinstance(expected, int):
                if status == expected:
                    return True
            elif status // 100 == int(expected[0]):
                return True
        return False
