"""The webhook's /validate route: warmgate's ConfigMaps checked as `warmgate validate` checks a
file. The decision with plain data (:mod:`warmgate.kube.config_review`), then the real server
over TLS, its sentence compared with the one `warmgate validate` prints for the same config."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.helpers import REPO, run_cli
from tests.test_webhook import Client, webhook, write_pair
from warmgate.kube.config_review import review_config_map, validation_response

VALID = """\
targets:
  - http:
      url: http://127.0.0.1:8080/items
gate:
  p95: 200ms
  timeout: 5m
"""
INVALID = {
    "negative-p95": VALID.replace("p95: 200ms", "p95: -3ms"),
    "unknown-field": VALID + "gate_typo: 1\n",
    "no-targets": "gate:\n  p95: 200ms\n",
    "not-yaml": "targets: [\n",
}
_UIDS = itertools.count(1)


def config_map_review(
    data: dict[str, str] | None,
    name: str = "warmgate",
    labels: dict[str, str] | None = None,
    operation: str = "CREATE",
) -> dict[str, Any]:
    """An AdmissionReview of a ConfigMap write, as the API server sends it."""
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "namespace": "shop", **({"labels": labels} if labels else {})}}  # fmt: skip
    if data is not None:
        obj["data"] = data
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"cm-{next(_UIDS)}", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": name, "namespace": "shop", "operation": operation, "object": obj,
        },
    }  # fmt: skip


def validate_says(text: str, tmp_path: Path) -> str:
    """What `warmgate validate --config FILE` prints on stderr for a config it rejects."""
    path = tmp_path / "warmgate.yaml"
    path.write_text(text)
    result = run_cli("validate", "--config", str(path))
    assert result.returncode == 2, result.stdout
    return result.stderr.strip()


# --- the decision with plain data --------------------------------------------------------------


def test_a_valid_config_is_allowed_silently() -> None:
    verdict = review_config_map(config_map_review({"warmgate.yaml": VALID})["request"], "warmgate")
    assert (verdict.allowed, verdict.message, verdict.warnings) == (True, "", ())
    assert verdict.config_map == "ConfigMap shop/warmgate"


@pytest.mark.parametrize("case", ["negative-p95", "unknown-field", "no-targets"])
def test_an_invalid_config_is_refused_with_validates_sentence(case: str, tmp_path: Path) -> None:
    """The refusal is exactly what `warmgate validate` prints for the same config in a file."""
    review = config_map_review({"warmgate.yaml": INVALID[case]})
    verdict = review_config_map(review["request"], "warmgate")
    assert verdict.allowed is False
    assert verdict.message == validate_says(INVALID[case], tmp_path)


def test_broken_yaml_is_refused_naming_the_config_map() -> None:
    verdict = review_config_map(
        config_map_review({"warmgate.yaml": INVALID["not-yaml"]})["request"], "warmgate"
    )
    assert verdict.allowed is False
    assert verdict.message.startswith("warmgate: ConfigMap shop/warmgate, key warmgate.yaml")


def test_a_config_map_without_the_key_is_refused() -> None:
    verdict = review_config_map(config_map_review({"other": "x"})["request"], "warmgate")
    assert verdict.allowed is False
    assert "has no key warmgate.yaml" in verdict.message


@pytest.mark.parametrize(
    ("name", "labels", "checked"),
    [
        ("warmgate", None, True),
        ("web-warmgate", {"app.kubernetes.io/component": "warmgate"}, True),
        ("settings", None, False),
        ("settings", {"app.kubernetes.io/component": "api"}, False),
    ],
)
def test_only_warmgates_config_maps_are_checked(
    name: str, labels: dict[str, str] | None, checked: bool
) -> None:
    """The default name or the component label: checked; any other ConfigMap: admitted as is."""
    review = config_map_review({"warmgate.yaml": INVALID["negative-p95"]}, name, labels)
    verdict = review_config_map(review["request"], "warmgate")
    assert verdict.allowed is not checked
    assert bool(verdict.config_map) is checked


def test_env_references_are_not_held_against_the_config() -> None:
    """${VAR} is the sidecar's (a Secret's key): a valid config using it is allowed; a config
    that may fail only for its placeholder is allowed with a warning, not refused; a config
    wrong whatever the variable holds is refused."""
    with_token = VALID.replace(
        "      url: http://127.0.0.1:8080/items\n",
        "      url: http://127.0.0.1:8080/items\n      headers: {Authorization: 'Bearer ${TOKEN}'}\n",
    )
    verdict = review_config_map(
        config_map_review({"warmgate.yaml": with_token})["request"], "warmgate"
    )
    assert (verdict.allowed, verdict.warnings) == (True, ())
    wrong = with_token.replace("p95: 200ms", "p95: -3ms")
    verdict = review_config_map(config_map_review({"warmgate.yaml": wrong})["request"], "warmgate")
    assert verdict.allowed is False
    assert "gate.p95" in verdict.message
    whole = VALID.replace("timeout: 5m", "timeout: ${GATE_TIMEOUT}")
    verdict = review_config_map(config_map_review({"warmgate.yaml": whole})["request"], "warmgate")
    assert verdict.allowed is True
    [warning] = verdict.warnings
    assert "gate.timeout" in warning
    assert "run warmgate validate where they are set" in warning


def test_the_refusal_is_an_admission_review_the_api_server_reads() -> None:
    review = config_map_review({"warmgate.yaml": INVALID["negative-p95"]})
    verdict = review_config_map(review["request"], "warmgate")
    answer = validation_response(review["request"]["uid"], verdict)["response"]
    assert answer["allowed"] is False
    assert answer["status"]["message"] == verdict.message
    assert answer["status"]["code"] == 422


# --- the real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("tls")
    write_pair(ca.issue_cert("127.0.0.1"), directory)
    with webhook(directory) as process:
        yield Client(process.port(), ca)


def post(client: Client, review: dict[str, Any]) -> dict[str, Any]:
    status, body = client.post("/validate", json.dumps(review).encode())
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)["response"]
    assert answer["uid"] == review["request"]["uid"]
    return answer


def test_the_server_denies_an_invalid_config_with_validates_sentence(
    client: Client, tmp_path: Path
) -> None:
    """/validate: invalid config denied with `warmgate validate`'s sentence, valid allowed,
    each counted."""
    before = client.metric("warmgate_webhook_config_reviews_total", result="denied")
    answer = post(client, config_map_review({"warmgate.yaml": INVALID["negative-p95"]}))
    assert answer["allowed"] is False
    assert answer["status"]["message"] == validate_says(INVALID["negative-p95"], tmp_path)
    assert client.metric("warmgate_webhook_config_reviews_total", result="denied") == before + 1
    answer = post(client, config_map_review({"warmgate.yaml": VALID}, operation="UPDATE"))
    assert answer["allowed"] is True
    assert "status" not in answer


def test_the_shipped_config_maps_pass_the_server() -> None:
    """Every warmgate ConfigMap under k8s/ is one the webhook admits (it runs the same check)."""
    from warmgate.kube.config_review import check_config_text

    found = 0
    for path in sorted((REPO / "k8s").rglob("configmap.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            check_config_text(obj["data"]["warmgate.yaml"], str(path))
            found += 1
    assert found >= 4
