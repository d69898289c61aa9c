"""What ``warmgate run`` does in the CLI process, before it ``exec``\\ s into a small one.

``run`` checks everything it can while it still has the whole CLI loaded, takes the status
directory's lock and binds the port, then becomes one of two long-lived processes, handing each
one value (``handover.py``):

- :func:`open_if_missing`: the config file of an optional ConfigMap is missing, so ``run``
  opens without warming (``open_run.py``);
- :func:`become_supervisor`: otherwise, the supervisor (``supervisor.py``), which starts the
  primers with ``run``'s own command line turned into ``prime`` (:func:`primer_argv`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warmgate.kernel.errors import ConfigError, StatusDirError
from warmgate.runtime.events import pod_from
from warmgate.runtime.handover import OpenHandover, SupervisorHandover, exec_into
from warmgate.runtime.open_run import open_reason, open_status
from warmgate.runtime.signals import EARLY as EARLY_SIGNALS
from warmgate.serve.server import listen
from warmgate.serve.status import Status, StatusDir, read_status

if TYPE_CHECKING:
    from warmgate.config.model import Config
    from warmgate.kernel.redaction import Secrets


def open_if_missing(flags: dict[str, Any], config_map: str | None) -> None:
    """Return when ``run`` should load its config as usual; otherwise take the status directory
    and the port, and ``exec`` into the open run (this returns only by raising)."""
    config = flags.get("config")
    path = Path(config) if config is not None else None
    reason = open_reason(path, path is not None and path.exists(), config_map)
    if reason is None or config_map is None:
        return
    from warmgate.config.model import Config, ServerConfig  # only now: the open path is light

    keep: list[int] = []
    status_dir = flags.get("status_dir")
    if status_dir is not None:
        directory = StatusDir(Path(status_dir))
        directory.prepare()
        keep.append(directory.lock())
    server = ServerConfig()
    host, port = flags.get("host"), flags.get("port")  # port 0 is a choice: any free port
    listener = listen(server.host if host is None else host, server.port if port is None else port)
    keep.append(listener.fileno())
    log_format = flags.get("log_format") or Config.model_fields["log_format"].default
    opened = OpenHandover(
        reason=reason,
        config_map=config_map,
        listen_fd=listener.fileno(),
        status_dir=str(status_dir) if status_dir is not None else None,
        log_format=str(log_format),
        status=open_status(reason, time.time()).to_json(),
        early_signal=EARLY_SIGNALS[0] if EARLY_SIGNALS else None,
    )
    exec_into("warmgate.runtime.open_run", opened, keep)


def _safe_read(directory: Path) -> dict[str, Any] | None:
    try:
        return read_status(directory)
    except StatusDirError:
        return None


def primer_argv(argv: list[str]) -> list[str]:
    """``run``'s command line with the command word turned into ``prime``."""
    args = list(argv)
    for index, word in enumerate(args):
        if word == "run":
            args[index] = "prime"
            return args
    raise ConfigError("cannot find the `run` command in the command line.")


def become_supervisor(config: Config, secrets: Secrets, argv: list[str]) -> None:
    """``run``: check everything a primer needs, take the status directory and the port, then
    ``exec`` into the lean supervisor (see ``supervisor.py``). Returns only by raising."""

    from warmgate.config.fields import http_endpoint
    from warmgate.runtime.warmup import policy_of
    from warmgate.traffic.targets import compile_config

    compiled = compile_config(config, secrets.warn, secrets=secrets).targets
    keep: list[int] = []
    resume = False
    status_dir: StatusDir | None = None
    if config.status_dir is not None:
        status_dir = StatusDir(config.status_dir)
        previous = _safe_read(config.status_dir) if config.status_dir.is_dir() else None
        status_dir.prepare()
        keep.append(status_dir.lock())
        # The lock was free, so the warmgate that wrote this is gone; if it vouched for the
        # app, confirm briefly instead of warming from nothing (the emptyDir outlived it).
        resume = bool(previous and previous.get("mode") == "run" and previous.get("ready"))
    listener = listen(config.server.host, config.server.port)
    keep.append(listener.fileno())
    watch = [endpoint for item in compiled for endpoint in item.endpoints()]
    if config.wait.url is not None:
        host, port, _ = http_endpoint(config.wait.url)
        watch.append((host, port))
    now = time.time()
    first = Status(
        state="waiting",
        ready=False,
        reason="confirming the app is still warm after warmgate restarted" if resume
        else "starting",
        started_at=now,
        updated_at=now,
        phase_started_at=now,
        armed_at=now,
        target_level=config.load.concurrency,
        hold_required_s=config.gate.hold,
        timeout_s=config.gate.timeout,
        mode="run",
    )  # fmt: skip
    handover = SupervisorHandover(
        argv=primer_argv(argv),
        listen_fd=listener.fileno(),
        status_dir=str(config.status_dir) if config.status_dir is not None else None,
        watch=list(dict.fromkeys(watch)),
        policy=asdict(policy_of(config)),
        keep_warm=config.after_ready.keep_warm_rate > 0,
        resume=resume,
        log_format=config.log_format,
        status=first.to_json(),
        early_signal=EARLY_SIGNALS[0] if EARLY_SIGNALS else None,
        events=pod_from(os.environ) if config.kubernetes.events else None,
    )
    if status_dir is not None:
        status_dir.write(first)
    del secrets  # the primer reads them again from the same environment
    exec_into("warmgate.runtime.supervisor", handover, keep)
