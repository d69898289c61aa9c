"""A Kubernetes API server for Events, in a thread: real TLS (a trustme CA), port 0.

It takes what an ``events.k8s.io/v1`` client sends and checks every request as the real one
would: the path and verb (POST to create in a namespace, PATCH one Event by name), the content
type (``application/json``; ``application/merge-patch+json`` for a patch), the bearer token,
and the body: against the Kubernetes OpenAPI schema of ``events.k8s.io/v1`` Event (the strict
one ``kubernetes-validate`` carries) and against the API server's own rules for new Events
(``pkg/apis/core/validation/events.go``: eventTime, reportingController, reportingInstance,
action and reason set, type Normal or Warning, note at most 1 KiB, the namespace of the path,
series with count >= 2 and lastObservedTime). A request that fails a check is answered 422 and
kept in :attr:`KubeApi.problems`.

It answers as the API server does: 201 with the object on a create, 409 AlreadyExists for a
name taken, 404 NotFound for a patch of an Event it does not have, 200 on a patch; 401 or 403
(a ``Status`` object) when :attr:`KubeApi.mode` says so, and never at all when it says
``hang``. :func:`kubeconfig` writes the file ``KUBECONFIG`` names.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import trustme

TOKEN = "tok-4f1d9a7e-very-secret-0c2b"  # noqa: S105 - the test server's own bearer token
"""The bearer token the server accepts (and that must never appear on any surface)."""
COLLECTION = re.compile(r"^/apis/events\.k8s\.io/v1/namespaces/([a-z0-9-]+)/events$")
ITEM = re.compile(r"^/apis/events\.k8s\.io/v1/namespaces/([a-z0-9-]+)/events/([a-z0-9.-]+)$")
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def event_problems(event: dict[str, Any], namespace: str) -> list[str]:
    """Why the API server would refuse ``event`` in ``namespace`` (empty: it would not)."""
    try:
        kubernetes_validate.validate(event, "1.36", strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"schema: {'.'.join(str(p) for p in exc.path)}: {exc.message}"]
    problems = []
    meta = event.get("metadata") or {}
    if not NAME.match(str(meta.get("name", ""))) or len(meta.get("name", "")) > 253:
        problems.append("metadata.name is not a DNS subdomain")
    if meta.get("namespace") != namespace:
        problems.append("metadata.namespace differs from the path's")
    if not MICRO_TIME.match(str(event.get("eventTime", ""))):
        problems.append("eventTime is not a MicroTime with microseconds")
    problems.extend(
        f"{key} is empty or longer than 128"
        for key in ("reportingInstance", "action", "reason")
        if not event.get(key) or len(event[key]) > 128
    )
    if not QUALIFIED.match(str(event.get("reportingController", ""))):
        problems.append("reportingController is not a qualified name")
    if event.get("type") not in ("Normal", "Warning"):
        problems.append("type is neither Normal nor Warning")
    if len(str(event.get("note", "")).encode()) > 1024:
        problems.append("note is longer than 1 KiB")
    regarding = event.get("regarding") or {}
    if not regarding.get("name") or regarding.get("namespace") != namespace:
        problems.append("regarding names no object of this namespace")
    series = event.get("series")
    if series is not None and (
        int(series.get("count", 0)) < 2
        or not MICRO_TIME.match(str(series.get("lastObservedTime", "")))
    ):
        problems.append("series needs count >= 2 and a lastObservedTime MicroTime")
    return problems


@dataclass
class Request:
    """One request the server took."""

    method: str
    path: str
    content_type: str
    body: dict[str, Any]
    status: int = 0


@dataclass
class KubeApi:
    """The server's state: its Events by (namespace, name), requests, problems, its mode."""

    port: int = 0
    ca: trustme.CA | None = None
    mode: str = "ok"
    """``ok``, ``unauthorized`` (401), ``forbidden`` (403) or ``hang`` (never answers)."""
    events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    """The bearer tokens requests carried, in order."""
    accepted: set[str] = field(default_factory=lambda: {TOKEN})
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def created(self) -> list[dict[str, Any]]:
        """The Events it holds, oldest first."""
        with self.lock:
            return sorted(self.events.values(), key=lambda event: event["eventTime"])

    def table(self) -> str:
        """The Events as ``kubectl events --for pod/NAME`` prints them."""
        rows = [("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")]
        events = []
        for event in self.created():
            series = event.get("series")
            seen = series["lastObservedTime"] if series else event["eventTime"]
            events.append((seen, series["count"] if series else 1, event))
        for seen, count, event in sorted(events, key=lambda item: item[0]):
            times = f" (x{count})" if count > 1 else ""
            pod = f"Pod/{event['regarding']['name']}"
            rows.append((seen[11:19] + times, event["type"], event["reason"], pod, event["note"]))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join(
            "   ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
            + "   "
            + row[4]
            for row in rows
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_GET(self) -> None:
        self._handle("GET")

    def _handle(self, method: str) -> None:
        api = self.server.api
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"<not json>": raw.decode(errors="replace")}
        request = Request(method, self.path, content_type, body)
        auth = self.headers.get("Authorization", "")
        with api.lock:
            api.requests.append(request)
            api.tokens.append(auth.removeprefix("Bearer "))
        if api.mode == "hang":
            api.released.wait(60)
            self.close_connection = True
            return
        if api.mode == "unauthorized" or auth.removeprefix("Bearer ") not in api.accepted:
            self._status(request, 401, "Unauthorized", "Unauthorized")
        elif api.mode == "forbidden":
            self._status(
                request, 403, "Forbidden",
                'events.events.k8s.io is forbidden: User "system:serviceaccount:prod:shop" '
                'cannot create resource "events" in API group "events.k8s.io"',
            )  # fmt: skip
        elif method == "POST" and (match := COLLECTION.match(self.path)):
            self._create(request, match.group(1))
        elif method == "PATCH" and (match := ITEM.match(self.path)):
            self._patch(request, match.group(1), match.group(2))
        else:
            self._problem(request, f"{method} {self.path} is not an Events request")

    def _create(self, request: Request, namespace: str) -> None:
        api = self.server.api
        if request.content_type != "application/json":
            return self._problem(request, f"create sent as {request.content_type}")
        problems = event_problems(request.body, namespace)
        if problems:
            return self._problem(request, "; ".join(problems))
        key = (namespace, request.body["metadata"]["name"])
        with api.lock:
            if key in api.events:
                exists = True
            else:
                exists = False
                api.events[key] = request.body
        if exists:
            return self._status(request, 409, "AlreadyExists", f'events "{key[1]}" already exists')
        return self._answer(request, 201, request.body)

    def _patch(self, request: Request, namespace: str, name: str) -> None:
        api = self.server.api
        if request.content_type != "application/merge-patch+json":
            return self._problem(request, f"patch sent as {request.content_type}")
        if set(request.body) != {"series"}:
            return self._problem(request, f"a series patch changes {sorted(request.body)}")
        with api.lock:
            current = api.events.get((namespace, name))
        if current is None:
            return self._status(request, 404, "NotFound", f'events "{name}" not found')
        merged = {**current, "series": request.body["series"]}
        problems = event_problems(merged, namespace)
        if problems:
            return self._problem(request, "; ".join(problems))
        with api.lock:
            api.events[(namespace, name)] = merged
        return self._answer(request, 200, merged)

    def _problem(self, request: Request, problem: str) -> None:
        self.server.api.problems.append(problem)
        self._status(request, 422, "Invalid", problem)

    def _status(self, request: Request, code: int, reason: str, message: str) -> None:
        status = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        }  # fmt: skip
        self._answer(request, code, status)

    def _answer(self, request: Request, code: int, document: dict[str, Any]) -> None:
        request.status = code
        data = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        """Quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: KubeApi, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api
        self.socket = context.wrap_socket(self.socket, server_side=True)


@contextmanager
def kube_api(mode: str = "ok") -> Iterator[KubeApi]:
    """An API server for Events on a free port, until the block ends."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "kubernetes.default.svc")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    api = KubeApi(ca=ca, mode=mode)
    server = _Server(api, context)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.released.set()
        server.shutdown()
        server.server_close()


def kubeconfig(api: KubeApi, directory: Path, token: str = TOKEN) -> Path:
    """A kubeconfig file for ``api`` (its CA in a file beside it); its path."""
    assert api.ca is not None
    ca_file = directory / "kube-ca.pem"
    api.ca.cert_pem.write_to_path(str(ca_file))
    path = directory / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": api.url, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": "warmgate", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "warmgate"}}],
        "current-context": "test",
    }
    path.write_text(json.dumps(config))
    return path
