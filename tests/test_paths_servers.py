"""`warmgate paths` on logs written here by real nginx and Tomcat servers, hit over HTTP.

Each server runs from its own configuration in a temporary directory on a free port; the tests
skip when the server is not installed, unless ``REQUIRE_TOOLS=1`` (set by CI) makes it
mandatory (``apt-get install nginx tomcat10``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, http_get, poll, run_cli
from tests.test_paths import url_lines

pytestmark = pytest.mark.slow

TOMCAT_HOME = Path("/usr/share/tomcat10")

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    log_format jsonl escape=json '{{"time":"$time_iso8601","request_uri":"$request_uri",'
                                 '"method":"$request_method","status":$status}}';
    server {{
        listen 127.0.0.1:{port};
        access_log {root}/access.log combined;
        access_log {root}/access.json jsonl;
        location = /gone {{ return 404; }}
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""

# The requests a user's browser makes, as (target, times).
VISITS = [
    ("/", 4),
    ("/order/17", 1),
    ("/order/4711;jsessionid=6E1F0A2B3C4D5E6F7A8B9C0D1E2F3A4B", 1),
    ("/order/88?print=yes&token=hunter2", 1),
    ("/search?q=socks", 2),
    ("/gone", 2),
]


def require(tool: str) -> str:
    """The path of ``tool``; skip (or fail under REQUIRE_TOOLS=1) when it is missing."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install nginx tomcat10)"
        if os.environ.get("REQUIRE_TOOLS") == "1":
            pytest.fail(f"{message}, and REQUIRE_TOOLS=1 makes it mandatory")
        pytest.skip(message)
    return path


def answers(port: int) -> bool:
    """Whether something accepts connections on ``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def visit(port: int) -> None:
    """Make the requests of :data:`VISITS` (and one POST) against ``port``."""
    for target, times in VISITS:
        for _ in range(times):
            http_get(f"http://127.0.0.1:{port}{target}")
    post = urllib.request.Request(f"http://127.0.0.1:{port}/cart", data=b"item=1", method="POST")
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(post, timeout=5).close()  # noqa: S310 - a local test server


@contextlib.contextmanager
def stopping(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Terminate ``process`` (and wait for it) however the block ends."""
    try:
        yield
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@contextlib.contextmanager
def nginx(root: Path) -> Iterator[int]:
    """nginx from its own config in ``root``; yields its port.

    nginx cannot listen on port 0, so a free port is picked and handed over; if another
    process takes it in between, nginx exits at once and a new port is tried.
    """
    binary = require("nginx")
    (root / "tmp").mkdir()
    for _ in range(5):
        port = free_port()
        config = root / "nginx.conf"
        config.write_text(NGINX_CONF.format(root=root, port=port))
        command = [binary, "-p", str(root), "-e", str(root / "error.log"), "-c", str(config)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with stopping(process):
            poll(lambda: answers(port) or process.poll() is not None, 15, what="nginx")  # noqa: B023
            if process.poll() is None:
                yield port
                return
        if "Address already in use" not in (root / "error.log").read_text():
            pytest.fail(f"nginx did not start: {(root / 'error.log').read_text()}")
    pytest.fail("nginx found no free port in five tries")


SERVER_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="0" address="127.0.0.1" protocol="HTTP/1.1"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs"
               prefix="access" suffix=".log" rotatable="false" buffered="false"
               pattern="{pattern}"/>
      </Host>
    </Engine>
  </Service>
</Server>
"""
# Only the default servlet, and no JAR scanning: Tomcat starts in about a second.
WEB_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <servlet>
    <servlet-name>default</servlet-name>
    <servlet-class>org.apache.catalina.servlets.DefaultServlet</servlet-class>
  </servlet>
  <servlet-mapping><servlet-name>default</servlet-name><url-pattern>/</url-pattern></servlet-mapping>
  <welcome-file-list><welcome-file>index.html</welcome-file></welcome-file-list>
</web-app>
"""
CONTEXT_XML = '<Context><JarScanner scanClassPath="false" scanManifest="false"/></Context>\n'


@contextlib.contextmanager
def tomcat(base: Path, pattern: str) -> Iterator[int]:
    """Tomcat 10 from its own CATALINA_BASE in ``base``, on a port it picks, logging with the
    AccessLogValve ``pattern``; yields the port."""
    java = require("java")
    if not (TOMCAT_HOME / "bin" / "bootstrap.jar").exists():
        require("tomcat10 (its bootstrap.jar)")
    for name in ("conf", "logs", "temp", "work", "webapps/ROOT/order"):
        (base / name).mkdir(parents=True)
    (base / "conf" / "server.xml").write_text(SERVER_XML.format(pattern=pattern))
    (base / "conf" / "web.xml").write_text(WEB_XML)
    (base / "conf" / "context.xml").write_text(CONTEXT_XML)
    (base / "webapps" / "ROOT" / "index.html").write_text("home\n")
    for page in ("order/17", "order/4711", "order/88", "search"):
        (base / "webapps" / "ROOT" / page).write_text("page\n")
    out = base / "catalina.out"
    classpath = f"{TOMCAT_HOME}/bin/bootstrap.jar:{TOMCAT_HOME}/bin/tomcat-juli.jar"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [java, "-XX:TieredStopAtLevel=1", f"-Dcatalina.base={base}",
             f"-Dcatalina.home={TOMCAT_HOME}", f"-Djava.io.tmpdir={base / 'temp'}",
             "-cp", classpath, "org.apache.catalina.startup.Bootstrap", "start"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    with stopping(process):
        # With port 0 Tomcat names its connector after the port it got: http-nio-...-auto-1-PORT.
        found = poll(
            lambda: (
                process.poll() is not None
                or re.search(r'auto-\d+-(\d+)"\]', out.read_text(errors="replace"))
            ),
            30,
            what="Tomcat's connector",
        )
        if process.poll() is not None:
            pytest.fail(f"Tomcat did not start: {out.read_text(errors='replace')[-2000:]}")
        port = int(found.group(1))
        poll(lambda: answers(port), 15, what="Tomcat's port")
        yield port


def assert_mined(log: Path, *extra: str) -> str:
    """Mine ``log`` and check the URL set the visits must give; returns what was written."""
    result = run_cli("paths", str(log), *extra)
    assert result.returncode == 0, result.stderr
    assert url_lines(result.stdout) == [
        ("/", 4),
        ("/order/{{choice([17,88,4711])}}", 3),
        ("/search", 2),
    ]
    assert "left out 1 not GET" in result.stderr
    assert "left out 2 with another status" in result.stderr
    assert " bad lines" not in result.stderr
    for secret in ("jsessionid", "6E1F0A2B", "hunter2", "socks", "print"):
        assert secret not in result.stdout
    return result.stdout


def wait_for_lines(log: Path, count: int) -> None:
    """Wait until the server has written ``count`` lines to ``log``."""
    poll(lambda: log.exists() and log.read_text().count("\n") >= count, 10, what=str(log))


def test_nginx_combined_and_json_logs(tmp_path: Path) -> None:
    """nginx's combined log and a JSON-lines log of the same visits give the same URL set."""
    with nginx(tmp_path) as port:
        visit(port)
        total = sum(times for _, times in VISITS) + 1
        wait_for_lines(tmp_path / "access.log", total)
        wait_for_lines(tmp_path / "access.json", total)
    combined = assert_mined(tmp_path / "access.log")
    assert combined.splitlines()[3:] == assert_mined(tmp_path / "access.json").splitlines()[3:]
    assert_mined(tmp_path / "access.json", "--format", "json")


@pytest.mark.parametrize(
    "pattern",
    ["common", "combined", "%h %l %u %t &quot;%r&quot; %s %b %D", "%h %t &quot;%r&quot; %s"],
    ids=["common", "combined", "with-duration", "status-last"],
)
def test_tomcat_access_log_valve(tmp_path: Path, pattern: str) -> None:
    """Tomcat's AccessLogValve, with ;jsessionid in a URL, mines the same set in any pattern."""
    with tomcat(tmp_path, pattern) as port:
        visit(port)
        wait_for_lines(tmp_path / "logs" / "access.log", sum(t for _, t in VISITS) + 1)
    assert_mined(tmp_path / "logs" / "access.log")
