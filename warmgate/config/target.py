"""One target's model: a named thing to warm, with a share of the load and one kind.

A :class:`Target` has a name (used in metrics, status and logs, never the URL), a weight, an
optional rate cap, and exactly one of an ``http:`` (:mod:`warmgate.config.http_target`), ``sql:``
(:mod:`warmgate.config.sql_target`), ``journey:`` (:mod:`warmgate.config.journey`) or ``grpc:``
(:mod:`warmgate.config.grpc_target`) block. A plain HTTP or gRPC target is refused here when its
request may write (each model's ``read_only_problem``).

A config model: pydantic, the models it holds and ``kernel/`` only, no I/O.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from warmgate.config.fields import MAX_RATE, StrictModel
from warmgate.config.grpc_target import GrpcTarget
from warmgate.config.http_target import HttpTarget
from warmgate.config.journey import Journey
from warmgate.config.sql_target import SqlTarget


class Target(StrictModel):
    """A named thing to warm, with a share of the load."""

    name: str = Field(
        description="Name used in metrics, status and logs (never the URL).",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    )
    weight: float = Field(1.0, gt=0, le=1e6, description="Relative share of requests.")
    rate: float | None = Field(
        None,
        gt=0,
        le=MAX_RATE,
        description=(
            "At most this many requests per second to this target (a shared database, say); "
            "the other targets take up the slack."
        ),
    )
    http: HttpTarget | None = Field(None, description="An HTTP target.")
    sql: SqlTarget | None = Field(None, description="A SQL target (read-only queries).")
    journey: Journey | None = Field(
        None, description="A journey: ordered HTTP steps per virtual user (a login, then pages)."
    )

    grpc: GrpcTarget | None = Field(None, description="A gRPC target (one unary method).")

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        kinds = [
            kind for kind in ("http", "sql", "journey", "grpc") if getattr(self, kind) is not None
        ]
        if not kinds:
            raise ValueError(
                f"target '{self.name}' needs a kind; add an http:, sql:, journey: or grpc: section"
            )
        if len(kinds) > 1:
            raise ValueError(
                f"target '{self.name}' has both {kinds[0]}: and {kinds[1]}:; a target has one "
                "kind, so make them two targets"
            )
        problem = None
        if self.http is not None:
            problem = self.http.read_only_problem()
        elif self.grpc is not None:
            problem = self.grpc.read_only_problem()
        if problem:
            raise ValueError(problem)
        return self
