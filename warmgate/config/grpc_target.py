"""One gRPC target's model: the unary call to repeat, its accepted status codes, timeout and TLS.

:class:`GrpcTarget` is a target's ``grpc:`` block: the server's ``host:port``, the method as
``package.Service/Method``, the request as a JSON message (a template rendered per call), the
metadata (templates, like HTTP headers), the status codes that count as success, and either TLS
(the settings of ``http.tls``) or ``plaintext: true``. The message types come from the server's
reflection service or from a ``descriptor_set`` file; both are read when the driver opens
(:mod:`warmgate.traffic.grpc`). Here only the text is checked, and the read-only rule
(:meth:`GrpcTarget.read_only_problem`) is decided from the method's name alone.

A config model: pydantic, the shared fields and ``kernel/`` only, no I/O.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from warmgate.config.fields import CONTROL_CHARACTERS, HEADER_NAME, Duration, StrictModel, positive
from warmgate.config.tls import TlsConfig

STATUS_CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""The gRPC status codes by number (``STATUS_CODES[14]`` is ``UNAVAILABLE``)."""
HEALTH_SERVICE = "grpc.health.v1.Health"
"""The standard health service: its methods only read."""
READ_ONLY_PREFIXES = ("Get", "List", "Search", "Check", "Find", "Read", "Lookup", "Describe")
"""A method whose name starts with one of these is taken to only read."""

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_METHOD = re.compile(rf"(?P<service>(?:{_IDENT}\.)*{_IDENT})/(?P<method>{_IDENT})")
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of a checked ``host:port`` (an IPv6 host loses its brackets)."""
    match = _ADDRESS.fullmatch(address)
    if match is None:
        raise ValueError(f"'{address}' is not host:port")
    return match["host"].strip("[]"), int(match["port"])


WRITING_WORDS = frozenset({
    "Or", "And", "Then", "Add", "Append", "Apply", "Archive", "Assign", "Cancel", "Claim",
    "Clear", "Commit", "Consume", "Create", "Decrement", "Delete", "Drop", "Increment", "Insert",
    "Lock", "Mark", "Merge", "Modify", "Move", "Patch", "Pop", "Purge", "Put", "Register",
    "Remove", "Replace", "Reset", "Restore", "Save", "Set", "Truncate", "Update", "Upsert",
    "Write",
})  # fmt: skip
"""Words that, after the read-only verb, say the method may write too: ``GetOrCreateUser``,
``FindAndModify``, ``ReadThenDelete``, ``ListAndPurge``."""
_AFTER_CHECK = frozenset({"In", "Out"})
"""``CheckIn`` and ``CheckOut`` book something rather than check it."""
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")


def writing_word(method: str) -> str | None:
    """The word of a method name that says it may write although it starts with a read-only
    verb (``Or`` in ``GetOrCreateUser``, ``Out`` in ``CheckOut``), or ``None``."""
    words: list[str] = [word.capitalize() for word in _WORD.findall(method)]
    if words[:1] == ["Check"] and len(words) > 1 and words[1] in _AFTER_CHECK:
        return words[1]
    return next((word for word in words[1:] if word in WRITING_WORDS), None)


def starts_read_only(method: str) -> bool:
    """Whether a method name starts with a read-only verb: ``GetUser``, ``List``; not
    ``Getaway`` (the verb must end where a new word starts)."""
    for prefix in READ_ONLY_PREFIXES:
        if method.startswith(prefix):
            rest = method[len(prefix) :]
            if not rest or not rest[0].islower():
                return True
    return False


class GrpcTarget(StrictModel):
    """One unary gRPC call to repeat. ``request`` and metadata values are templates."""

    address: str = Field(description="The server, as host:port (an IPv6 host in brackets).")
    method: str = Field(description="The method to call, as package.Service/Method.")
    request: str = Field(
        "{}",
        description=(
            "The request message as JSON (protobuf's JSON mapping), a template rendered for "
            "every call."
        ),
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Metadata sent with every call (templates), like HTTP headers; redacted.",
    )
    timeout: Duration = Field(
        5.0, description="Per-call deadline; a call past it is slow and failed."
    )
    expect: list[str | int] = Field(
        default_factory=lambda: list[str | int](["OK"]),
        description="Status codes that count as success, by name (OK, NOT_FOUND) or number.",
    )
    tls: TlsConfig | None = Field(
        None, description="TLS settings (as http.tls); unset: TLS trusting the public CAs."
    )
    plaintext: bool = Field(False, description="Speak gRPC without TLS (h2c).")
    descriptor_set: Path | None = Field(
        None,
        description=(
            "A FileDescriptorSet file (protoc --descriptor_set_out --include_imports) with the "
            "method's types, for a server without reflection; unset: server reflection."
        ),
    )
    confirm_read_only: bool = Field(
        False,
        description=(
            "Allow a method outside the read-only rule (the health service, or a name that "
            "starts with Get, List, Search, Check, Find, Read, Lookup or Describe): it only reads."
        ),
    )

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        address = address.strip()
        if "://" in address:
            raise ValueError(
                f"'{address}' is a URL; write the server as host:port, such as app:50051, and "
                "set plaintext: true or tls for the scheme"
            )
        try:
            _, port = split_address(address)
        except ValueError:
            raise ValueError(
                f"'{address}' is not host:port; write it as app:50051 (an IPv6 host as [::1]:50051)"
            ) from None
        if not 1 <= port <= 65535:
            raise ValueError(f"'{address}' has port {port}; write a port from 1 to 65535")
        return address

    @field_validator("method")
    @classmethod
    def _method(cls, method: str) -> str:
        method = method.strip().lstrip("/")
        if not _METHOD.fullmatch(method):
            raise ValueError(
                f"'{method}' is not a gRPC method; write package.Service/Method, such as "
                "shop.v1.Catalog/GetItem"
            )
        return method

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, timeout: float) -> float:
        return positive(timeout, "5s")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, metadata: dict[str, str]) -> dict[str, str]:
        checked = {}
        for name, value in metadata.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a metadata key; use letters, digits and dashes, such as "
                    "x-request-id"
                )
            key = name.lower()
            if key.endswith("-bin") or key.startswith("grpc-"):
                raise ValueError(
                    f"metadata key {name} is binary or reserved for gRPC itself; use a text key "
                    "that neither ends in -bin nor starts with grpc-"
                )
            if CONTROL_CHARACTERS.search(value):
                raise ValueError(
                    f"the value of metadata {name} contains a line break or control character; "
                    "remove it"
                )
            checked[key] = value
        return checked

    @field_validator("expect", mode="before")
    @classmethod
    def _no_booleans(cls, codes: object) -> object:
        if isinstance(codes, list) and any(isinstance(code, bool) for code in codes):
            raise ValueError("true and false are not gRPC status codes; write a name such as OK")
        return codes

    @field_validator("expect")
    @classmethod
    def _expect(cls, codes: list[str | int]) -> list[str | int]:
        if not codes:
            raise ValueError("list at least one status code, such as [OK]")
        names: list[str | int] = []
        for code in codes:
            if isinstance(code, int) and 0 <= code < len(STATUS_CODES):
                names.append(STATUS_CODES[code])
            elif isinstance(code, str) and code.strip().upper() in STATUS_CODES:
                names.append(code.strip().upper())
            else:
                raise ValueError(
                    f"'{code}' is not a gRPC status code; write a name such as OK or NOT_FOUND, "
                    "or a number from 0 to 16"
                )
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _tls_or_plaintext(self) -> GrpcTarget:
        if self.plaintext and self.tls is not None:
            raise ValueError(
                "plaintext: true and tls are both set; remove tls to speak without TLS, or "
                "plaintext to speak TLS"
            )
        return self

    @property
    def host(self) -> str:
        """The server's host."""
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        """The server's port."""
        return split_address(self.address)[1]

    @property
    def service(self) -> str:
        """``package.Service``."""
        return self.method.partition("/")[0]

    @property
    def method_name(self) -> str:
        """``Method``."""
        return self.method.partition("/")[2]

    def accepts(self, code: str) -> bool:
        """Whether the status code named ``code`` counts as success."""
        return code in self.expect

    def read_only_problem(self) -> str | None:
        """Why this call may write, unless the rule or ``confirm_read_only`` says it only reads."""
        if self.confirm_read_only or self.service == HEALTH_SERVICE:
            return None
        if starts_read_only(self.method_name):
            word = writing_word(self.method_name)
            if word is None:
                return None
            return (
                f"method {self.method} may change data and warm-up traffic must never write: "
                f"its name starts with a read-only verb but also says '{word}'; set "
                f"confirm_read_only: true if this method only reads"
            )
        return (
            f"method {self.method} may change data and warm-up traffic must never write; a "
            f"gRPC method is called only if it is in the standard health service "
            f"({HEALTH_SERVICE}) or its name starts with {', '.join(READ_ONLY_PREFIXES[:-1])} "
            f"or {READ_ONLY_PREFIXES[-1]}; set confirm_read_only: true if this method only reads"
        )
