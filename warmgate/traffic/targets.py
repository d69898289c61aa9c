"""Turn the configured targets into compiled plans and live drivers.

Compiling (templates, endpoints, the read-only check of SQL queries, the TLS files) needs no
network, so ``validate`` and ``run`` run it too and mistakes surface before any traffic. Each
distinct TLS setting is loaded once and shared by every target (and the ``wait.url`` probe) that
has it. Opening drivers creates the shared clients and pools: one HTTP client per distinct TLS
setting, one gRPC channel per gRPC target. SQLAlchemy is imported only when a config has SQL
targets, grpcio and protobuf only when it has gRPC targets.

``wait.url`` takes ``wait.tls`` when set; otherwise the TLS setting of the HTTP target (or the
journey's https steps) with the same host and port, since it is the same server with the same
certificate and the same demand for a client certificate. A ``wait.url`` with no such target
uses the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from warmgate.config.fields import http_endpoint
from warmgate.config.model import Config
from warmgate.config.target import Target
from warmgate.config.tls import TlsConfig
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import Secrets, mask_url
from warmgate.traffic.driver import Driver, Warn, warn_on_stderr
from warmgate.traffic.templating import Templates
from warmgate.traffic.tls import Tls, load_tls
from warmgate.traffic.web.driver import HttpDriver, HttpPlan, make_client

if TYPE_CHECKING:
    import httpx

    from warmgate.config.journey import Journey
    from warmgate.traffic.grpc.driver import GrpcPlan
    from warmgate.traffic.sql.driver import SqlPlan
    from warmgate.traffic.web.journey import JourneyPlan


@dataclass(frozen=True, slots=True)
class CompiledTarget:
    """A target with its templates compiled."""

    target: Target
    http: HttpPlan | None = None
    sql: SqlPlan | None = None
    journey: JourneyPlan | None = None
    grpc: GrpcPlan | None = None
    tls: Tls | None = None
    """For an https target (or a journey with https steps): its TLS, loaded."""

    @property
    def web(self) -> bool:
        """Whether this target speaks HTTP (``wait.url`` stands for such targets)."""
        return self.http is not None or self.journey is not None

    def endpoints(self) -> list[tuple[str, int]]:
        """The HTTP and gRPC hosts and ports this target sends to (none for SQL)."""
        if self.grpc is not None:
            return [(self.grpc.host, self.grpc.port)]
        if self.http is not None:
            return [(self.http.host, self.http.port)]
        if self.journey is not None:
            return list(dict.fromkeys((step.host, step.port) for step in self.journey.steps))
        return []


@dataclass(frozen=True, slots=True)
class WaitPlan:
    """The ``wait.url`` probe: its URL and, for https, its TLS."""

    url: str
    tls: Tls | None = None


@dataclass(frozen=True, slots=True)
class Compiled:
    """Everything compiled from a config, ready to open."""

    targets: list[CompiledTarget]
    wait: WaitPlan | None = None


class _TlsLoader:
    """Loads each distinct TLS setting once; its warnings go to ``warn`` once."""

    def __init__(self, warn: Warn) -> None:
        self._warn = warn
        self._loaded: dict[TlsConfig, Tls] = {}

    def __call__(self, settings: TlsConfig | None, where: str) -> Tls:
        settings = settings or TlsConfig()
        if settings not in self._loaded:
            tls = load_tls(settings, where)
            for warning in tls.warnings:
                self._warn(f"{warning}.")
            self._loaded[settings] = tls
        return self._loaded[settings]


def compile_config(
    config: Config,
    warn: Warn = warn_on_stderr,
    *,
    environ: Mapping[str, str] | None = None,
    secrets: Secrets | None = None,
) -> Compiled:
    """Compile every target and the wait probe, loading TLS files once; raises ConfigError
    (TemplateError) naming the field. Warnings about the files (an expired certificate) go to
    ``warn``.

    Journey secrets are read from ``environ`` (default: the process environment) or files.
    A template's first render may hold a secret (``${VAR}`` in a URL whose host is a
    template): error messages go through ``secrets`` first, and a template that holds one
    never shows what it renders (see ``templating.py``).
    """
    try:
        return _compile(config, warn, environ, secrets)
    except ConfigError as exc:
        if secrets is None:
            raise
        raise type(exc)(secrets.redact(str(exc))) from None


def _compile(
    config: Config, warn: Warn, environ: Mapping[str, str] | None, secrets: Secrets | None
) -> Compiled:
    templates = Templates(files=config.template_files, secrets=secrets)
    load = _TlsLoader(warn)
    compiled = []
    for index, target in enumerate(config.targets):
        where = f"targets[{index}]"
        if target.http is not None:
            plan = HttpPlan.compile(target.http, templates, f"{where}.http")
            if target.http.tls is not None and not plan.tls:  # a url is checked as it loads
                raise ConfigError(
                    f"{where}.http: tls is set but the URLs of {target.http.urls_file} start "
                    "with http://, so it would do nothing; write https:// or remove tls."
                )
            tls = load(target.http.tls, f"{where}.http.tls") if plan.tls else None
            compiled.append(CompiledTarget(target, http=plan, tls=tls))
        elif target.sql is not None:
            from warmgate.traffic.sql.driver import SqlPlan

            sql = SqlPlan.compile(target.sql, templates, f"{where}.sql", target.name)
            compiled.append(CompiledTarget(target, sql=sql))
        elif target.journey is not None:
            from warmgate.traffic.web.journey import JourneyPlan

            journey = JourneyPlan.compile(target.journey, templates, f"{where}.journey", environ)
            tls = _journey_tls(target.journey, journey, where, load)
            compiled.append(CompiledTarget(target, journey=journey, tls=tls))
        elif target.grpc is not None:
            field = f"{where}.grpc"
            _need_grpc(field)
            from warmgate.traffic.grpc.driver import GrpcPlan

            if not target.grpc.plaintext:  # the files checked, their warnings given, once
                load(target.grpc.tls, f"{field}.tls")
            grpc = GrpcPlan.compile(target.grpc, templates, field)
            compiled.append(CompiledTarget(target, grpc=grpc))
    return Compiled(compiled, _compile_wait(config, compiled, load))


def _need_grpc(field: str) -> None:
    """A ConfigError naming ``field`` when the optional gRPC libraries are not installed."""
    import importlib

    try:
        for module in ("grpc", "grpc_health.v1", "grpc_reflection.v1alpha", "google.protobuf"):
            importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{field}: gRPC targets need grpcio, grpcio-health-checking, grpcio-reflection and "
            "protobuf, which this installation lacks; install warmgate[grpc] (pip install "
            "'warmgate[grpc]'), or build the image with --build-arg EXTRAS=[grpc]."
        ) from None


def compile_targets(
    config: Config,
    environ: Mapping[str, str] | None = None,
    secrets: Secrets | None = None,
    warn: Warn = warn_on_stderr,
) -> list[CompiledTarget]:
    """The targets of :func:`compile_config`."""
    return compile_config(config, warn, environ=environ, secrets=secrets).targets


def _journey_tls(journey: Journey, plan: JourneyPlan, where: str, load: _TlsLoader) -> Tls | None:
    """The one TLS setting of a journey's https steps; they share one client, so they must
    agree. ``None`` when no step uses https."""
    settings = {
        number: step.http.tls or TlsConfig()
        for number, (step, compiled) in enumerate(zip(journey.steps, plan.steps, strict=True))
        if compiled.tls
    }
    if not settings:
        return None
    if len(set(settings.values())) > 1:
        names = " and ".join(f"{where}.journey.steps[{number}].http.tls" for number in settings)
        raise ConfigError(
            f"{names} differ: a journey's https steps share one connection pool; give them "
            "the same tls settings."
        )
    first = next(iter(settings))
    return load(journey.steps[first].http.tls, f"{where}.journey.steps[{first}].http.tls")


def wait_tls_settings(
    config: Config, compiled: Sequence[CompiledTarget]
) -> tuple[TlsConfig | None, str]:
    """The TLS settings of ``wait.url`` and the field they come from.

    ``wait.tls`` when set; else those of the https targets on the same host and port, which
    must agree; else the defaults. Raises ConfigError when those targets disagree.
    """
    if config.wait.tls is not None or config.wait.url is None:
        return config.wait.tls, "wait.tls"
    host, port, _ = http_endpoint(config.wait.url)
    same: dict[int, tuple[TlsConfig, str]] = {}  # target index: its settings, their field
    for index, item in enumerate(compiled):
        if item.tls is None:  # no https to this target
            continue
        if item.http is not None and (item.http.host, item.http.port) == (host, port):
            same[index] = (item.tls.settings, f"targets[{index}].http.tls")
        elif item.journey is not None:
            # A journey's https steps share one setting (_journey_tls): the first step there.
            number = next(
                (n for n, step in enumerate(item.journey.steps)
                 if step.tls and (step.host, step.port) == (host, port)),
                None,
            )  # fmt: skip
            if number is not None:
                where = f"targets[{index}].journey.steps[{number}].http.tls"
                same[index] = (item.tls.settings, where)
    settings = {found for found, _ in same.values()}
    if len(settings) > 1:
        names = " and ".join(f"targets[{index}]" for index in same)
        raise ConfigError(
            f"wait.url {mask_url(config.wait.url)} is on the server of {names}, whose "
            "tls settings differ; set wait.tls to the settings the wait probe should use."
        )
    if settings:
        return next(iter(same.values()))
    return None, "wait.tls"


def _compile_wait(
    config: Config, compiled: Sequence[CompiledTarget], load: _TlsLoader
) -> WaitPlan | None:
    url = config.wait.url
    if url is None:
        return None
    try:
        http_endpoint(url)
    except ValueError as exc:  # a template in the host or port, never rendered
        raise ConfigError(f"wait.url: {exc}.") from None
    if not url.lower().startswith("https://"):
        return WaitPlan(url)
    settings, where = wait_tls_settings(config, compiled)
    return WaitPlan(url, load(settings, where))


async def open_drivers(
    config: Config,
    compiled: Sequence[CompiledTarget],
    stack: AsyncExitStack,
    warn: Warn = warn_on_stderr,
    secrets: Secrets | None = None,
) -> list[Driver]:
    """Create the drivers in the order of ``compiled`` (the load pairs them with the weights);
    everything they hold is closed when ``stack`` closes. Drivers send warnings to ``warn``
    (a role that can write, a row cap reached), and keep ``secrets`` out of the details of
    their outcomes (a database's message that quotes a bound value, say)."""
    drivers: list[Driver] = []
    clients: dict[Tls | None, httpx.AsyncClient] = {}
    for item in compiled:
        if (item.http is not None or item.journey is not None) and item.tls not in clients:
            context = item.tls.context if item.tls is not None else None
            clients[item.tls] = make_client(config.load.concurrency, config.traffic, context)
            stack.push_async_callback(clients[item.tls].aclose)
    for item in compiled:
        target = item.target
        if item.http is not None and target.http is not None:
            client = clients[item.tls]
            drivers.append(HttpDriver(target.name, target.http, item.http, client, item.tls))
        elif item.sql is not None:
            from warmgate.traffic.sql.driver import SqlDriver

            drivers.append(
                SqlDriver.open(target.name, item.sql, config.load.concurrency, warn, secrets)
            )
        elif item.journey is not None:
            from warmgate.traffic.web.journey import JourneyDriver

            client = clients[item.tls]
            drivers.append(JourneyDriver(target.name, item.journey, client, warn, item.tls))
        elif item.grpc is not None:
            from warmgate.traffic.grpc.driver import GrpcDriver

            drivers.append(GrpcDriver.open(target.name, item.grpc, config.traffic))
    for driver in drivers:
        stack.push_async_callback(driver.aclose)
    return drivers
