"""Turn the configured targets into compiled plans and live drivers.

Compiling (templates, endpoints) needs no network, so ``validate`` runs it too and template
mistakes surface before any traffic. Opening drivers creates the shared clients and pools.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from warmgate.config import Config, Target
from warmgate.drivers import Driver
from warmgate.drivers.http import HttpDriver, HttpPlan, make_client
from warmgate.templating import Templates


@dataclass(frozen=True, slots=True)
class CompiledTarget:
    """A target with its templates compiled."""

    target: Target
    http: HttpPlan | None = None


def compile_targets(config: Config) -> list[CompiledTarget]:
    """Compile every target's templates; raises TemplateError naming the field."""
    templates = Templates()
    compiled = []
    for index, target in enumerate(config.targets):
        where = f"targets[{index}]"
        if target.http is not None:
            plan = HttpPlan.compile(target.http, templates, f"{where}.http")
            compiled.append(CompiledTarget(target, http=plan))
    return compiled


async def open_drivers(
    config: Config, compiled: Sequence[CompiledTarget], stack: AsyncExitStack
) -> list[Driver]:
    """Create the drivers; everything they hold is closed when ``stack`` closes."""
    drivers: list[Driver] = []
    http = [(item.target, item.http) for item in compiled if item.http is not None]
    if http:
        tls = any(plan.tls for _, plan in http)
        client = make_client(config.load.concurrency, config.traffic, tls=tls)
        stack.push_async_callback(client.aclose)
        for target, plan in http:
            if target.http is not None:
                drivers.append(HttpDriver(target.name, target.http, plan, client))
    for driver in drivers:
        stack.push_async_callback(driver.aclose)
    return drivers
