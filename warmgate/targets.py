"""Turn the configured targets into compiled plans and live drivers.

Compiling (templates, endpoints, the read-only check of SQL queries) needs no network, so
``validate`` runs it too and mistakes surface before any traffic. Opening drivers creates the
shared clients and pools. SQLAlchemy is imported only when a config has SQL targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from warmgate.config import Config, Target
from warmgate.drivers import Driver, Warn, warn_on_stderr
from warmgate.drivers.http import HttpDriver, HttpPlan, make_client
from warmgate.errors import ConfigError
from warmgate.secrets import Secrets
from warmgate.templating import Templates

if TYPE_CHECKING:
    from warmgate.drivers.journey import JourneyPlan
    from warmgate.drivers.sql import SqlPlan


@dataclass(frozen=True, slots=True)
class CompiledTarget:
    """A target with its templates compiled."""

    target: Target
    http: HttpPlan | None = None
    sql: SqlPlan | None = None
    journey: JourneyPlan | None = None

    def endpoints(self) -> list[tuple[str, int]]:
        """The HTTP hosts and ports this target sends to (none for SQL)."""
        if self.http is not None:
            return [(self.http.host, self.http.port)]
        if self.journey is not None:
            return list(dict.fromkeys((step.host, step.port) for step in self.journey.steps))
        return []


def compile_targets(
    config: Config, environ: Mapping[str, str] | None = None, secrets: Secrets | None = None
) -> list[CompiledTarget]:
    """Compile every target's templates; raises TemplateError naming the field.

    Journey secrets are read from ``environ`` (default: the process environment) or files.
    A template's first render may hold a secret (``${VAR}`` in a URL whose host is a
    template): error messages go through ``secrets`` first.
    """
    try:
        return _compile(config, environ)
    except ConfigError as exc:
        if secrets is None:
            raise
        raise type(exc)(secrets.redact(str(exc))) from None


def _compile(config: Config, environ: Mapping[str, str] | None) -> list[CompiledTarget]:
    templates = Templates()
    compiled = []
    for index, target in enumerate(config.targets):
        where = f"targets[{index}]"
        if target.http is not None:
            plan = HttpPlan.compile(target.http, templates, f"{where}.http")
            compiled.append(CompiledTarget(target, http=plan))
        elif target.sql is not None:
            from warmgate.drivers.sql import SqlPlan

            sql = SqlPlan.compile(target.sql, templates, f"{where}.sql", target.name)
            compiled.append(CompiledTarget(target, sql=sql))
        elif target.journey is not None:
            from warmgate.drivers.journey import JourneyPlan

            journey = JourneyPlan.compile(target.journey, templates, f"{where}.journey", environ)
            compiled.append(CompiledTarget(target, journey=journey))
    return compiled


async def open_drivers(
    config: Config,
    compiled: Sequence[CompiledTarget],
    stack: AsyncExitStack,
    warn: Warn = warn_on_stderr,
) -> list[Driver]:
    """Create the drivers in the order of ``compiled`` (the load pairs them with the weights);
    everything they hold is closed when ``stack`` closes. Drivers send warnings to ``warn``
    (a role that can write, a row cap reached)."""
    drivers: list[Driver] = []
    client = None
    if any(item.http is not None or item.journey is not None for item in compiled):
        plans: list[HttpPlan | JourneyPlan] = [
            plan for item in compiled for plan in (item.http, item.journey) if plan is not None
        ]
        tls = any(plan.tls for plan in plans)
        client = make_client(config.load.concurrency, config.traffic, tls=tls)
        stack.push_async_callback(client.aclose)
    for item in compiled:
        target = item.target
        if item.http is not None and target.http is not None and client is not None:
            drivers.append(HttpDriver(target.name, target.http, item.http, client))
        elif item.sql is not None:
            from warmgate.drivers.sql import SqlDriver

            drivers.append(SqlDriver.open(target.name, item.sql, config.load.concurrency, warn))
        elif item.journey is not None and client is not None:
            from warmgate.drivers.journey import JourneyDriver

            drivers.append(JourneyDriver(target.name, item.journey, client, warn))
    for driver in drivers:
        stack.push_async_callback(driver.aclose)
    return drivers
