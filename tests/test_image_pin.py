"""One Kustomize `images:` entry pins the webhook and the sidecar image it injects together.

Overlays of k8s/webhook/ are rendered with `kubectl kustomize` (tests/kubectl.py: skipped
without kubectl unless REQUIRE_TOOLS=1) and searched for every warmgate image reference; then the
rendered Deployment's environment is given to a real `warmgate webhook`, whose patch must carry
the pinned image.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.helpers import REPO
from tests.kubectl import kubectl
from tests.reviews import deployment_pod, patched, request
from tests.test_webhook import Client, webhook, write_pair
from warmgate.cli.options import env_name

WEBHOOK = REPO / "k8s" / "webhook"
BASE = REPO / "k8s" / "base"
DIGEST = "sha256:" + "0123456789abcdef" * 4
SHIPPED = "ghcr.io/warmgate/warmgate"
IMAGE_REFERENCE = re.compile(r"(^|/)warmgate(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")
"""A string that names a warmgate image (any registry, tag or digest)."""


def render(directory: Path, tmp_path: Path, **kustomization: Any) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of an overlay in ``tmp_path`` on ``directory``."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [os.path.relpath(directory, tmp_path)], **kustomization})
    )
    result = subprocess.run(
        [kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def strings(node: Any) -> Iterator[str]:
    """Every string value anywhere in ``node``."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def warmgate_images(objects: list[dict[str, Any]]) -> list[str]:
    return [text for text in strings(objects) if IMAGE_REFERENCE.search(text) and "." in text]


def webhook_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container["env"]}


PINS = {
    "digest": ({"newName": "registry.internal/mirror/warmgate", "digest": DIGEST},
               f"registry.internal/mirror/warmgate@{DIGEST}"),
    "tag": ({"newTag": "1.2.3"}, f"{SHIPPED}:1.2.3"),
    "mirror-tag-digest": ({"newName": "mirror.example/wg/warmgate", "newTag": "1.2.3",
                           "digest": DIGEST}, f"mirror.example/wg/warmgate:1.2.3@{DIGEST}"),
}  # fmt: skip


@pytest.mark.parametrize("pin", list(PINS))
def test_one_images_entry_pins_the_webhook_and_the_injected_image(pin: str, tmp_path: Path) -> None:
    """The rendered overlay names no warmgate image but the pinned one: the container's and the
    one the webhook injects (WARMGATE_WEBHOOK_IMAGE)."""
    entry, pinned = PINS[pin]
    objects = render(WEBHOOK, tmp_path, images=[{"name": SHIPPED, **entry}])
    found = warmgate_images(objects)
    assert found == [pinned, pinned], found
    assert webhook_env(objects)["WARMGATE_WEBHOOK_IMAGE"] == pinned
    assert webhook_env(objects)["WARMGATE_WEBHOOK_CONFIG_MAP"] == "warmgate"  # others untouched


def test_the_pin_reaches_through_an_overlay_of_an_overlay(tmp_path: Path) -> None:
    """A team's overlay on a platform overlay on k8s/webhook/: the outer entry still pins both."""
    inner = tmp_path / "platform"
    inner.mkdir()
    (inner / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {"resources": [os.path.relpath(WEBHOOK, inner)], "namespace": "warmgate-system"}
        )
    )
    outer = tmp_path / "team"
    outer.mkdir()
    entry, pinned = PINS["digest"]
    objects = render(inner, outer, images=[{"name": SHIPPED, **entry}])
    assert warmgate_images(objects) == [pinned, pinned]


def test_the_unpinned_render_names_the_shipped_image_twice(tmp_path: Path) -> None:
    """The search above finds both references when nothing is pinned, so it can fail."""
    objects = render(WEBHOOK, tmp_path)
    assert len(warmgate_images(objects)) == 2
    assert all(image.startswith(f"{SHIPPED}:") for image in warmgate_images(objects))


def test_the_sidecar_manifests_follow_the_same_entry(tmp_path: Path) -> None:
    """k8s/base/'s sidecar (an init container) is pinned by the same entry."""
    entry, pinned = PINS["digest"]
    objects = render(BASE, tmp_path, images=[{"name": SHIPPED, **entry}])
    assert warmgate_images(objects) == [pinned]


def test_the_webhook_injects_the_pinned_image_and_pull_secrets(tmp_path: Path) -> None:
    """The rendered environment, given to a real `warmgate webhook`, makes it inject the pinned
    image, and WARMGATE_WEBHOOK_IMAGE_PULL_SECRET the pods' pull secrets."""
    entry, pinned = PINS["digest"]
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    env = webhook_env(render(WEBHOOK, overlay, images=[{"name": SHIPPED, **entry}]))
    assert env_name("image", "WARMGATE_WEBHOOK_") in env  # the variable the option reads
    env[env_name("image_pull_secret", "WARMGATE_WEBHOOK_")] = "mirror-pull other-pull"
    ca = trustme.CA()
    certificates = tmp_path / "tls"
    certificates.mkdir()
    write_pair(ca.issue_cert("127.0.0.1"), certificates)
    env.pop("WARMGATE_WEBHOOK_CONFIG_MAP")
    os_env = {key: value for key, value in env.items() if key.startswith("WARMGATE_WEBHOOK_")}
    with webhook(certificates, env=os_env) as process:
        client = Client(process.port(), ca)
        pod = deployment_pod({"warmgate.io/inject": "enabled"})
        after = patched(copy.deepcopy(pod), client.review(request(pod)))
    [sidecar] = [c for c in after["spec"]["initContainers"] if c["name"] == "warmgate"]
    assert sidecar["image"] == pinned
    assert after["spec"]["imagePullSecrets"] == [{"name": "mirror-pull"}, {"name": "other-pull"}]
