"""Turn the configured targets into compiled plans and live drivers.

Compiling (templates, endpoints, the read-only check of SQL queries) needs no network, so
``validate`` runs it too and mistakes surface before any traffic. Opening drivers creates the
shared clients and pools. SQLAlchemy is imported only when a config has SQL targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from warmgate.config import Config, Target
from warmgate.drivers import Driver, Warn, warn_on_stderr
from warmgate.drivers.http import HttpDriver, HttpPlan, make_client
from warmgate.templating import Templates

if TYPE_CHECKING:
    from warmgate.drivers.sql import SqlPlan


@dataclass(frozen=True, slots=True)
class CompiledTarget:
    """A target with its templates compiled."""

    target: Target
    http: HttpPlan | None = None
    sql: SqlPlan | None = None


def compile_targets(config: Config) -> list[CompiledTarget]:
    """Compile every target's templates; raises TemplateError naming the field."""
    templates = Templates(files=config.template_files)
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
    if any(item.http is not None for item in compiled):
        tls = any(item.http.tls for item in compiled if item.http is not None)
        client = make_client(config.load.concurrency, config.traffic, tls=tls)
        stack.push_async_callback(client.aclose)
    for item in compiled:
        target = item.target
        if item.http is not None and target.http is not None and client is not None:
            drivers.append(HttpDriver(target.name, target.http, item.http, client))
        elif item.sql is not None:
            from warmgate.drivers.sql import SqlDriver

            drivers.append(SqlDriver.open(target.name, item.sql, config.load.concurrency, warn))
    for driver in drivers:
        stack.push_async_callback(driver.aclose)
    return drivers
