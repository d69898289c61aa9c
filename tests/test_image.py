"""The container image, built from the real Dockerfile and run the way Kubernetes runs it.

Build: buildah with chroot isolation (no container engine, no daemon) builds ``Dockerfile``
unchanged, on the base image ``.ci/image-base`` makes when no registry can be reached (passed in
as ``BASE_IMAGE``; docs/image.md). The host's CA bundle is lent to the build's ``RUN`` steps as a
read-only volume, so ``pip`` reaches the index through a proxy the host trusts; it is in no layer.
The SBOM tool's stage stays cached between runs; everything else is built afresh and removed.

Run: no container engine either. The image's root file system (``buildah mount``) is bind-mounted
read-only in a private mount namespace, with ``/proc``, a read-only ``/dev`` holding the usual
device nodes and a ``/dev/shm`` tmpfs, and the status directory: a 1 MiB tmpfs (an ``emptyDir`` in memory, as the
manifests use) or a plain directory (a default ``emptyDir``). A launcher then does what the
kubelet does with the manifests' ``securityContext``: chroot, drop every capability (the
bounding set too), set ``no_new_privs``, become UID/GID 65532 with no supplementary groups, and
exec the image's entrypoint in its working directory with exactly the image's environment (no
HOME). The network is the host's, as a pod's containers share one: the simulated app on loopback
plays the app container, and ``/readyz`` is probed from the host.

Any write outside the status directory fails with EROFS, so the clean logs and exit codes below
prove warmgate needs none. Needs root, buildah and the base image (``.ci/run`` installs and makes
them); skips without them unless ``REQUIRE_IMAGE=1``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, free_port, http_get, items_url, poll
from warmgate import __version__
from warmgate.demo.simapp import SimApp

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CACHE = Path("/var/cache/warmgate-ci")
STORAGE = ["--root", str(CACHE / "storage"), "--runroot", "/run/warmgate-ci/storage",
           "--storage-driver", "overlay"]  # fmt: skip
BASE = "localhost/warmgate-ci/python:3.11-slim-bookworm"
TAG = "localhost/warmgate:test"
SBOM_TOOL = "localhost/warmgate-ci/sbom-tool:latest"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
USER = 65532
LABELS = {
    "version": __version__,
    "revision": "4f0c9b5e2d7a1c3e8b6f0a9d2c4e6b8a1f3d5c7e",
    "created": "2026-01-02T03:04:05Z",
    "source": "https://example.org/warmgate",
}
QUICK_GATE = ["--concurrency", "4", "--window", "5s", "--hold", "1s", "--min-requests", "10",
              "--timeout", "60s"]  # fmt: skip
BENCHMARKS = REPO / "docs" / "benchmarks.md"
RECORDED_SIZE = re.compile(r"warmgate's own layers \S+ hold \*\*([\d,]+) bytes\*\*")

# Runs in the private mount namespace: $1 the image's root, $2 where it goes, $3 the status dir.
MOUNTS = r"""
set -eu
image=$1 root=$2 status=$3
shift 3
mount --bind "$image" "$root"
mount -o remount,bind,ro "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o size=64k,mode=0755,nosuid tmpfs "$root/dev"
for node in null zero full random urandom; do
  touch "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/shm"
mount -t tmpfs -o size=64m,mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
mount -o remount,ro "$root/dev"
mount --bind "$status" "$root/warmgate"
exec "$@"
"""

# What the kubelet's runtime does last: argv is ROOT WORKDIR ENV_JSON COMMAND...
LAUNCHER = r"""
import ctypes, json, os, sys
import warnings  # os.execvpe needs it, and the host's library is out of reach after chroot
root, workdir, env, *command = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
os.chroot(root)
os.chdir(workdir)
cap = 0
while libc.prctl(24, cap, 0, 0, 0) == 0:  # PR_CAPBSET_DROP, up to the kernel's last capability
    cap += 1
os.setgroups([])
os.setgid(65532)
os.setuid(65532)  # without PR_SET_KEEPCAPS this clears the permitted and effective sets
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: allowPrivilegeEscalation: false
    raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
os.execvpe(command[0], command, json.loads(env))
"""


@dataclass(frozen=True)
class Image:
    """The built image: its configuration, layers, and its root file system on the host."""

    config: dict[str, Any]
    layer_sizes: list[int]
    base_layers: int
    rootfs: Path

    @property
    def env(self) -> dict[str, str]:
        """The image's environment, exactly."""
        return dict(entry.split("=", 1) for entry in self.config["Env"])

    @property
    def labels(self) -> dict[str, str]:
        """The image's labels."""
        return dict(self.config["Labels"])


def buildah(*args: str, timeout: float = 600) -> str:
    """Run buildah on CI's own storage; its stdout, or a failure showing its output."""
    done = subprocess.run(
        ["buildah", *STORAGE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"buildah {args[0]} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def require_build_tools() -> None:
    """Skip (or fail under REQUIRE_IMAGE=1) unless root, buildah and the base image are here."""
    reason = ""
    if os.geteuid() != 0:
        reason = "building and running the image needs root"
    elif shutil.which("buildah") is None:
        reason = "buildah is not installed"
    elif subprocess.run(["buildah", *STORAGE, "inspect", "--type", "image", BASE],
                        capture_output=True, check=False).returncode != 0:  # fmt: skip
        reason = f"the base image {BASE} is missing"
    if not reason:
        return
    reason += "; .ci/image-base installs buildah and makes the base image"
    if os.environ.get("REQUIRE_IMAGE") == "1":
        pytest.fail(f"{reason}, and REQUIRE_IMAGE=1 makes these tests mandatory")
    pytest.skip(reason)


@contextlib.contextmanager
def storage_lock() -> Iterator[None]:
    """One image test at a time per machine: they share the storage and clean it up."""
    with (CACHE / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def layer_sizes(name: str) -> list[int]:
    """The uncompressed size of each layer of image ``name``, base first."""
    manifest = json.loads(json.loads(buildah("inspect", "--type", "image", name))["Manifest"])
    return [int(layer["size"]) for layer in manifest["layers"]]


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """The Dockerfile built on the local base, mounted; removed with its build cache after."""
    require_build_tools()
    build_args = [f"--build-arg=BASE_IMAGE={BASE}"] + [
        f"--build-arg={key.upper()}={value}" for key, value in LABELS.items()
    ]
    if HOST_CA.is_file():
        build_args.append(f"--volume={HOST_CA}:{HOST_CA}:ro")
    bud = ["bud", "--isolation", "chroot", "--layers", "--pull=never", *build_args]
    with storage_lock():
        buildah("rm", "--all")  # working containers left by an interrupted run
        # Kept under a tag, the SBOM tool's stage outlives the clean-up below, so later builds
        # take it from the layer cache; a changed stage is rebuilt and the old one pruned.
        buildah(*bud, "--target", "sbom-tool", "--tag", SBOM_TOOL, str(REPO))
        buildah(*bud, "--tag", TAG, str(REPO))
        container = buildah("from", "--pull=never", TAG).strip()
        try:
            inspected = json.loads(buildah("inspect", "--type", "image", TAG))
            yield Image(
                config=inspected["OCIv1"]["config"],
                layer_sizes=layer_sizes(TAG),
                base_layers=len(layer_sizes(BASE)),
                rootfs=Path(buildah("mount", container).strip()),
            )
        finally:
            buildah("umount", container)
            buildah("rm", container)
            buildah("rmi", TAG)
            buildah("rmi", "--prune")


@dataclass(frozen=True)
class Pod:
    """The image as a container of a pod whose emptyDir ``status_dir`` is mounted at /warmgate."""

    image: Image
    root: Path
    status_dir: Path

    def command(self, *command: str) -> list[str]:
        """The host command that runs ``command`` in the container as the kubelet would."""
        return ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", MOUNTS, "mounts", str(self.image.rootfs), str(self.root),
                str(self.status_dir), sys.executable, "-I", "-c", LAUNCHER, str(self.root),
                self.image.config["WorkingDir"], json.dumps(self.image.env), *command]  # fmt: skip

    def warmgate(self, *args: str) -> list[str]:
        """The host command for a container with Kubernetes ``args``: the entrypoint stays."""
        return self.command(*self.image.config["Entrypoint"], *args)


@pytest.fixture
def on_disk(image: Image, tmp_path: Path) -> Pod:
    """A default emptyDir: a directory on the node's disk, mode 0777 as the kubelet makes it."""
    status_dir = tmp_path / "empty-dir"
    status_dir.mkdir()
    status_dir.chmod(0o777)
    (tmp_path / "root").mkdir()
    return Pod(image, tmp_path / "root", status_dir)


@pytest.fixture
def in_memory(image: Image, tmp_path: Path) -> Iterator[Pod]:
    """An emptyDir with medium Memory and sizeLimit 1Mi: a 1 MiB tmpfs, mode 0777."""
    status_dir = tmp_path / "memory-dir"
    status_dir.mkdir()
    (tmp_path / "root").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", str(status_dir)],
                   check=True)  # fmt: skip
    yield Pod(image, tmp_path / "root", status_dir)
    subprocess.run(["umount", str(status_dir)], check=True)


def execute(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and capture its output."""
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every line of a JSON-lines log; a line that is not JSON fails the test."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_clean(stdout: str, stderr: str) -> None:
    """No failed write, no traceback, nothing on stderr: the read-only root was never hit."""
    for marker in ("Read-only file system", "Permission denied", "Traceback", "Errno"):
        assert marker not in stdout, f"{marker!r} in the logs:\n{stdout}"
    assert stderr == "", f"stderr:\n{stderr}"


def readyz(port: int) -> int:
    """The status code of ``/readyz`` from the host; 0 while nothing listens."""
    try:
        return http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)[0]
    except (urllib.error.URLError, ConnectionError):
        return 0


def test_the_container_is_read_only_unprivileged_and_has_no_home(on_disk: Pod) -> None:
    """The harness enforces what Kubernetes would: EROFS, UID/GID 65532, no capabilities, no HOME."""
    probe = "cat /proc/self/status; env; touch /tmp/x || touch /opt/warmgate/x || exit 3"
    done = execute(on_disk.command("sh", "-c", probe))
    assert done.returncode == 3, done
    assert done.stderr.count("Read-only file system") == 2
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":\t" in line)
    assert fields["Uid"].split() == [str(USER)] * 4
    assert fields["Gid"].split() == [str(USER)] * 4
    assert fields["Groups"].split() == []
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[capabilities], 16) == 0, capabilities
    assert fields["NoNewPrivs"].strip() == "1"
    assert "HOME=" not in done.stdout
    assert "WARMGATE_STATUS_DIR=/warmgate" in done.stdout


def test_run_as_a_native_sidecar_becomes_ready_and_stops_on_sigterm(
    in_memory: Pod, sim_app: Callable[..., SimApp]
) -> None:
    """run in the image: /readyz 200 from the host, status and marker written, SIGTERM exits 0."""
    app = sim_app()
    port = free_port()
    args = ["run", "--url", items_url(app.port), *QUICK_GATE, "--port", str(port),
            "--log-format", "json"]  # fmt: skip
    sidecar = subprocess.Popen(
        in_memory.warmgate(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll(lambda: readyz(port) == 200 or sidecar.poll() is not None, 90, 0.1, "/readyz 200")
        assert sidecar.poll() is None, "run exited before it was ready"
        status = json.loads((in_memory.status_dir / "status.json").read_text())
        assert (status["state"], status["ready"]) == ("ready", True)
        assert (in_memory.status_dir / "ready").is_file()
        assert not [*Path(f"/proc/{sidecar.pid}/root/dev/shm").iterdir()], "wrote to /dev/shm"
        sidecar.send_signal(signal.SIGTERM)
        code = sidecar.wait(timeout=10)  # generous: the grace period asked of it is 2 s
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
        stdout, stderr = sidecar.communicate(timeout=10)
    assert code == 0, f"run exited {code}:\n{stdout}\n{stderr}"
    assert_clean(stdout, stderr)
    assert any(event["event"] == "listening" for event in json_lines(stdout))


def test_prime_as_an_init_container_then_check_and_the_exec_probe(
    on_disk: Pod, sim_app: Callable[..., SimApp]
) -> None:
    """prime exits 0 and leaves the status; check and `cat /warmgate/ready` then exit 0."""
    app = sim_app()
    args = ["prime", "--url", items_url(app.port), *QUICK_GATE, "--log-format", "json"]
    primed = execute(on_disk.warmgate(*args))
    assert primed.returncode == 0, primed
    assert_clean(primed.stdout, primed.stderr)
    json_lines(primed.stdout)
    status = json.loads((on_disk.status_dir / "status.json").read_text())
    assert (status["state"], status["ready"]) == ("ready", True)
    assert {path.name for path in on_disk.status_dir.iterdir()} >= {"status.json", "ready"}

    checked = execute(on_disk.warmgate("check"))
    assert checked.returncode == 0, checked
    assert checked.stderr == ""
    probed = execute(on_disk.command("cat", "/warmgate/ready"))
    assert probed.returncode == 0, probed
    assert probed.stderr == ""


def test_the_statement_check_reads_postgresql_in_the_image(on_disk: Pod) -> None:
    """``validate`` in the image reads a PostgreSQL query with pglast's parser, its library
    stripped in the build: a call hidden from a regex reading exits 2 naming the call."""
    config = on_disk.status_dir / "warmup.yaml"
    config.write_text(
        "targets:\n  - name: db\n    sql:\n      url: postgresql://app@db/shop\n"
        "      query: \"SELECT 1 AS x$$, pg_read_file('/etc/hostname') AS y$$\"\n"
    )
    validated = execute(on_disk.warmgate("validate", "--config", "/warmgate/warmup.yaml"))
    assert validated.returncode == 2, validated
    assert "targets[0].sql.query calls pg_read_file, which reads or writes files" in (
        validated.stderr
    )
    assert "Traceback" not in validated.stderr


def test_the_image_is_lean_labelled_and_carries_its_sbom(image: Image) -> None:
    """No compiler, no pip, labels from the build arguments, an SBOM naming every package."""
    assert image.config["User"] == f"{USER}:{USER}"
    assert image.config["Entrypoint"] == ["warmgate"]
    assert image.config["WorkingDir"] == "/warmgate"
    assert image.env["WARMGATE_STATUS_DIR"] == "/warmgate"
    assert image.env["MALLOC_ARENA_MAX"] == "2"
    for key, value in LABELS.items():
        assert image.labels[f"org.opencontainers.image.{key}"] == value
    assert image.labels["org.opencontainers.image.base.name"] == BASE

    root = image.rootfs
    path = [root / entry.lstrip("/") for entry in image.env["PATH"].split(":")]
    for tool in ("pip", "pip3", "cc", "gcc", "make", "ld"):
        assert not any((directory / tool).exists() for directory in path), tool
    assert not [*root.glob("usr/lib/python3*/site-packages/pip")]
    assert not [*root.glob("usr/local/lib/python3*/site-packages/pip")]
    assert not [*root.glob("usr/lib/python3/dist-packages/pip")]
    packages = root / "opt/warmgate/lib/python3.11/site-packages"
    assert not (packages / "pip").exists()

    sbom = json.loads((root / "usr/share/doc/warmgate/sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    listed = {normalise(component["name"]) for component in sbom["components"]}
    listed.add(normalise(sbom["metadata"]["component"]["name"]))
    installed = {normalise(info.name.split("-")[0]) for info in packages.glob("*.dist-info")}
    assert "warmgate" in installed
    assert installed <= listed, installed - listed


def test_warmgate_s_own_layers_stay_within_ten_percent_of_their_recorded_size(
    image: Image,
) -> None:
    """Everything above the base is at most 10% larger than docs/benchmarks.md records."""
    recorded = RECORDED_SIZE.search(BENCHMARKS.read_text())
    assert recorded, "docs/benchmarks.md records no size for warmgate's own layers"
    limit = int(recorded[1].replace(",", "")) * 1.10
    own = sum(image.layer_sizes[image.base_layers :])
    assert own <= limit, (
        f"warmgate's layers hold {own:,} bytes, over 110% of the recorded size: record the new "
        "size in docs/benchmarks.md with a line saying what grew and why"
    )


def normalise(name: str) -> str:
    """A distribution name in its normal form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()
