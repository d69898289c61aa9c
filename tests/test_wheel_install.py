"""The container image's install steps, without Docker: wheels, an offline install, a real run.

The Dockerfile builds wheels for warmgate and every dependency in one stage and installs only
those, offline, in the next. These tests check the Dockerfile still says so, then perform the
same two commands into a fresh virtual environment and run the installed command the way the
image does (no source tree on the path, no bytecode written, writes only to the status dir).
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
from warmgate.simapp import SimApp

DOCKERFILE = REPO / "Dockerfile"
BUILD = ["pip", "wheel", "--wheel-dir", "/wheels", "."]
INSTALL = ["pip", "install", "--no-index", "--no-cache-dir", "--find-links", "/wheels", "warmgate"]
IMAGE_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    """Run a command to completion; its stdout, or a failure showing its output."""
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def here(command: list[str], wheels: Path) -> list[str]:
    """A Dockerfile command with its /wheels directory moved to ``wheels``."""
    return [str(wheels) if part == "/wheels" else part for part in command]


def files_under(directory: Path) -> set[Path]:
    """Every file below ``directory``."""
    return {path for path in directory.rglob("*") if path.is_file()}


def test_the_dockerfile_installs_only_wheels_as_a_numeric_non_root_user() -> None:
    """The Dockerfile runs the commands this module repeats, then drops to UID 65532."""
    text = DOCKERFILE.read_text()
    assert f"RUN {' '.join(BUILD)}" in text
    assert " ".join(INSTALL) in text
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in final_stage
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
    """pip wheel, an offline install of those wheels, then `--version` and a real `prime`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMGATE_", "PYTHON"))}
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", *here(BUILD, wheels)], cwd=REPO, env=env)
    assert any(wheels.glob(f"warmgate-{__version__}-py3-none-any.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    python = str(venv / "bin" / "python")
    run([python, "-m", *here(INSTALL, wheels)], cwd=tmp_path, env=env)

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
