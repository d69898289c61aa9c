"""The container image's install steps, without a container: wheels, an offline install, a run.

The Dockerfile's builder builds wheels for warmgate and every dependency, then installs only
those, offline, into a virtual environment that has no pip of its own; the final stage copies
that environment. These tests check the Dockerfile still says so, then perform the same commands
into a fresh environment and run the installed command the way the image does (no source tree on
the path, no bytecode written, writes only to the status dir). tests/test_image.py builds and
runs the real image where buildah is available.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import REPO
from warmgate import __version__
from warmgate.demo.simapp import SimApp

DOCKERFILE = REPO / "Dockerfile"
BUILD = ["pip", "wheel", "--wheel-dir", "/wheels", "."]
VENV = ["python3", "-m", "venv", "--without-pip", "/opt/warmgate"]
INSTALL = ["pip", "--python", "/opt/warmgate/bin/python", "install", "--no-index", "--no-cache-dir",
           "--find-links", "/wheels", "warmgate"]  # fmt: skip
IMAGE_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    """Run a command to completion; its stdout, or a failure showing its output."""
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def here(command: list[str], wheels: Path, venv: Path) -> list[str]:
    """A Dockerfile command with /wheels moved to ``wheels`` and /opt/warmgate to ``venv``."""
    return [part.replace("/wheels", str(wheels)).replace("/opt/warmgate", str(venv))
            for part in command]  # fmt: skip


def instructions(dockerfile: str) -> str:
    """The Dockerfile with its continued lines joined and runs of blanks made one space."""
    return " ".join(dockerfile.replace("\\\n", " ").split())


def files_under(directory: Path) -> set[Path]:
    """Every file below ``directory``."""
    return {path for path in directory.rglob("*") if path.is_file()}


def test_the_dockerfile_installs_only_wheels_as_a_numeric_non_root_user() -> None:
    """The builder runs the commands this module repeats; the final stage copies, then drops to 65532."""
    text = DOCKERFILE.read_text()
    # The default image has no extras: EXTRAS="" (docs/grpc.md builds one with [grpc]).
    assert '\nARG EXTRAS=""\n' in text
    default = text.replace('".${EXTRAS}"', ".").replace('"warmgate${EXTRAS}"', "warmgate")
    builder, final_stage = instructions(default).rsplit(" FROM ", 1)
    assert f"RUN {' '.join(BUILD)}" in builder
    assert f"RUN {' '.join(VENV)} && {' '.join(INSTALL)}" in builder
    assert "COPY --from=builder /opt/warmgate /opt/warmgate" in final_stage
    assert "pip install" not in final_stage
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "\nUSER 65532:65532\n" in final_stage
    assert '\nENTRYPOINT ["warmgate"]\n' in final_stage
    assert "PYTHONDONTWRITEBYTECODE=1" in final_stage
    for label in ("title", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in final_stage
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[1:4] == ["*", "!pyproject.toml", "!README.md"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_wheel_installs_offline_into_a_fresh_venv_and_primes_an_app(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """pip wheel, an offline install into a pip-less venv, then `--version` and a real `prime`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMGATE_", "PYTHON"))}
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    run([sys.executable, "-m", *here(BUILD, wheels, venv)], cwd=REPO, env=env)
    assert any(wheels.glob(f"warmgate-{__version__}-py3-none-any.whl"))
    run([sys.executable, *here(VENV, wheels, venv)[1:]], cwd=tmp_path, env=env)
    run([sys.executable, "-m", *here(INSTALL, wheels, venv)], cwd=tmp_path, env=env)
    python = str(venv / "bin" / "python")
    assert not [*venv.glob("lib/python*/site-packages/pip")], "the environment has a pip"

    work = tmp_path / "work"
    work.mkdir()
    env |= IMAGE_ENV
    warmgate = str(venv / "bin" / "warmgate")
    assert run([warmgate, "--version"], cwd=work, env=env).strip() == f"warmgate {__version__}"
    location = run([python, "-c", "import warmgate; print(warmgate.__file__)"], cwd=work, env=env)
    assert Path(location.strip()).is_relative_to(venv), "the source tree, not the wheel, ran"

    app = sim_app()
    status_dir = work / "status"
    before = files_under(venv)
    run([warmgate, "prime", "--url", f"http://127.0.0.1:{app.port}/items/{{{{ randint(1, 9) }}}}",
         "--concurrency", "4", "--window", "2s", "--hold", "1s", "--min-requests", "10",
         "--timeout", "30s", "--status-dir", str(status_dir), "--log-format", "json"],
        cwd=work, env=env, timeout=60)  # fmt: skip
    status = json.loads((status_dir / "status.json").read_text())
    assert status["state"] == "ready"
    assert status["ready"] is True
    assert (status_dir / "ready").is_file()
    assert files_under(venv) == before, "the installed package wrote into its own files"
    assert {path.parent for path in files_under(work)} == {status_dir}
