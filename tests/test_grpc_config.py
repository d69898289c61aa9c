"""gRPC targets' config: the fields, the read-only rule, the plan in words."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import run_cli
from warmgate.config.advice import config_warnings
from warmgate.config.describe import describe
from warmgate.config.grpc_target import (
    READ_ONLY_PREFIXES,
    WRITING_WORDS,
    GrpcTarget,
    starts_read_only,
)
from warmgate.config.loader import load_config
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import Secrets


def grpc_config(**fields: object) -> dict[str, object]:
    """A config of one gRPC target with ``fields`` over a plaintext GetItem call."""
    grpc = {"address": "127.0.0.1:50051", "method": "shop.v1.Catalog/GetItem", "plaintext": True}
    return {"targets": [{"name": "catalog", "grpc": {**grpc, **fields}}]}


def load(tmp_path: Path, **fields: object) -> str:
    """The error a config of one gRPC target with ``fields`` is refused with."""
    import yaml

    path = tmp_path / "warmup.yaml"
    path.write_text(yaml.safe_dump(grpc_config(**fields)))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


@pytest.mark.parametrize("method", [
    "grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch", "shop.v1.Catalog/GetItem",
    "shop.Catalog/ListItems", "Catalog/Search", "a.b.C/FindByName", "x.Y/ReadBlob",
    "x.Y/LookupUser", "x.Y/DescribeTable", "x.Y/CheckStock", "x.Y/Get_item", "x.Y/Get2",
])  # fmt: skip
def test_read_only_methods_are_allowed(method: str) -> None:
    """The health service and the read-only verbs need no confirmation."""
    assert GrpcTarget(address="h:1", method=method, plaintext=True).read_only_problem() is None


@pytest.mark.parametrize("method", [
    "shop.v1.Cart/AddItem", "shop.v1.Checkout/Checkout", "x.Y/Getaway", "x.Y/Listen",
    "x.Y/DeleteItem", "x.Y/UpdateUser", "x.Y/getItem", "grpc.health.v2.Health/SetStatus",
])  # fmt: skip
def test_other_methods_need_confirmation(method: str) -> None:
    """A method outside the rule is refused, naming the rule; confirm_read_only allows it."""
    problem = GrpcTarget(address="h:1", method=method, plaintext=True).read_only_problem()
    assert problem is not None
    assert problem.startswith(f"method {method} may change data")
    assert "Get, List, Search, Check, Find, Read, Lookup or Describe" in problem
    assert "confirm_read_only: true" in problem
    confirmed = GrpcTarget(address="h:1", method=method, plaintext=True, confirm_read_only=True)
    assert confirmed.read_only_problem() is None


@pytest.mark.parametrize(("method", "word"), [
    ("x.Y/GetOrCreateUser", "Or"), ("x.Y/FindOrCreate", "Or"), ("x.Y/FindAndModify", "And"),
    ("x.Y/ReadAndDelete", "And"), ("x.Y/ListAndPurge", "And"), ("x.Y/CheckOut", "Out"),
    ("x.Y/CheckIn", "In"), ("x.Y/GetThenDelete", "Then"), ("x.Y/Get_or_create", "Or"),
    ("x.Y/LookupAndSetFlag", "And"), ("x.Y/ReadUpdateTime", "Update"),
])  # fmt: skip
def test_a_read_only_verb_followed_by_a_writing_word_needs_confirmation(
    method: str, word: str
) -> None:
    """``GetOrCreateUser`` starts like a read and may write: refused, naming the word."""
    problem = GrpcTarget(address="h:1", method=method, plaintext=True).read_only_problem()
    assert problem is not None
    assert problem.startswith(f"method {method} may change data")
    assert f"also says '{word}'" in problem
    assert "confirm_read_only: true" in problem
    confirmed = GrpcTarget(address="h:1", method=method, plaintext=True, confirm_read_only=True)
    assert confirmed.read_only_problem() is None


@given(
    st.sampled_from(READ_ONLY_PREFIXES),
    st.sampled_from(sorted(WRITING_WORDS)),
    st.sampled_from(["", "User", "Item_2"]),
)
def test_no_writing_word_after_a_verb_passes(verb: str, word: str, tail: str) -> None:
    """Whatever the verb, a writing word after it makes the call need confirmation."""
    method = f"x.Y/{verb}Thing{word}{tail}"
    assert GrpcTarget(address="h:1", method=method, plaintext=True).read_only_problem()


@pytest.mark.parametrize("method", [
    "x.Y/GetOrder", "x.Y/GetSettings", "x.Y/ListAddresses", "x.Y/CheckInventory",
    "x.Y/FindOrigin", "x.Y/SearchAnderson",
])  # fmt: skip
def test_words_that_only_start_like_a_writing_word_are_reads(method: str) -> None:
    """``Order`` is not ``Or``, ``Settings`` not ``Set``: whole words only."""
    assert GrpcTarget(address="h:1", method=method, plaintext=True).read_only_problem() is None


@given(
    st.sampled_from(READ_ONLY_PREFIXES),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"),
)
def test_a_verb_counts_only_as_a_whole_word(prefix: str, rest: str) -> None:
    """``GetX`` reads; ``Getaway`` is another word and does not."""
    expected = not rest or not rest[0].islower()
    assert starts_read_only(prefix + rest) is expected
    assert not starts_read_only(prefix.lower() + rest)


def test_validate_refuses_a_writing_method_and_allows_it_confirmed(tmp_path: Path) -> None:
    """``validate`` exits 2 with the rule's sentence; confirm_read_only: true lets it through."""
    path = tmp_path / "warmup.yaml"
    path.write_text(
        "targets:\n  - name: cart\n    grpc:\n      address: 127.0.0.1:9\n"
        "      method: shop.v1.Cart/AddItem\n      plaintext: true\n"
        "      descriptor_set: missing.pb\n"
    )
    refused = run_cli("validate", "--config", str(path))
    assert refused.returncode == 2, refused.stderr
    assert "method shop.v1.Cart/AddItem may change data and warm-up traffic must never write" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr
    path.write_text(path.read_text() + "      confirm_read_only: true\n")
    allowed = run_cli("validate", "--config", str(path))
    # Past the rule, the descriptor set is read: the next mistake is the missing file.
    assert "may change data" not in allowed.stderr
    assert "descriptor_set" in allowed.stderr, allowed.stderr
    assert allowed.returncode == 2


@pytest.mark.parametrize(("fields", "message"), [
    ({"address": "http://app:50051"}, "is a URL; write the server as host:port"),
    ({"address": "app"}, "'app' is not host:port"),
    ({"address": "app:70000"}, "has port 70000"),
    ({"method": "GetItem"}, "'GetItem' is not a gRPC method; write package.Service/Method"),
    ({"expect": ["FINE"]}, "'FINE' is not a gRPC status code"),
    ({"expect": []}, "list at least one status code"),
    ({"metadata": {"x-token-bin": "a"}}, "binary or reserved"),
    ({"metadata": {"bad key": "a"}}, "is not a metadata key"),
    ({"tls": {"verify": False}}, "plaintext: true and tls are both set"),
    ({"timeout": "0s"}, "targets[0].grpc.timeout"),
])  # fmt: skip
def test_mistakes_name_the_field_and_the_fix(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    """Each mistake is one sentence under targets[0].grpc."""
    error = load(tmp_path, **fields)
    assert "targets[0].grpc" in error
    assert message in error


def test_codes_are_names_and_metadata_keys_lowercase() -> None:
    """Numbers become names; metadata keys are sent lowercase, as gRPC requires."""
    target = GrpcTarget(
        address="[::1]:50051",
        method="/shop.v1.Catalog/GetItem",
        expect=[0, "not_found", 5],
        metadata={"X-Tenant": "a"},
        plaintext=True,
    )
    assert target.expect == ["OK", "NOT_FOUND"]
    assert target.metadata == {"x-tenant": "a"}
    assert (target.host, target.port) == ("::1", 50051)
    assert target.method == "shop.v1.Catalog/GetItem"
    assert target.accepts("NOT_FOUND")
    assert not target.accepts("UNAVAILABLE")


def test_describe_and_advice(tmp_path: Path) -> None:
    """The plan names the call and where its types come from; TLS that verifies nothing and a
    timeout longer than the window are warned about."""
    import yaml

    path = tmp_path / "warmup.yaml"
    config = grpc_config(timeout="30s", plaintext=False, tls={"verify": False})
    path.write_text(yaml.safe_dump(config))
    loaded, secrets = load_config(path)
    text = describe(loaded, Secrets())
    assert "gRPC shop.v1.Catalog/GetItem at 127.0.0.1:50051 (expect OK, timeout 30s)" in text
    assert "types from server reflection" in text
    warnings = config_warnings(loaded)
    assert any(w.startswith("targets[0].grpc.timeout 30s is longer") for w in warnings)
    assert any(w.startswith("targets[0].grpc.tls.verify is false") for w in warnings)
    del secrets


def test_without_the_grpc_extra_a_grpc_target_is_a_config_error(tmp_path: Path) -> None:
    """An installation without warmgate[grpc] refuses a gRPC target with exit 2 and the fix.

    The interpreter is told grpcio is absent (``sys.modules["grpc"] = None`` makes importing it
    fail, as in an installation without it)."""
    import subprocess
    import sys

    path = tmp_path / "warmup.yaml"
    path.write_text(
        "targets:\n  - grpc: {address: '127.0.0.1:9', method: a.B/GetC, plaintext: true}\n"
    )
    code = (
        "import sys; sys.modules['grpc'] = None\n"
        "from warmgate.cli.main import main\n"
        f"sys.argv = ['warmgate', 'validate', '--config', {str(path)!r}]\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "targets[0].grpc: gRPC targets need grpcio" in result.stderr
    assert "pip install 'warmgate[grpc]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_metadata_secrets_are_never_shown(tmp_path: Path) -> None:
    """A ${VAR} secret in metadata stays out of validate's plan and of template errors."""
    path = tmp_path / "warmup.yaml"
    path.write_text(
        "targets:\n  - name: catalog\n    grpc:\n      address: 127.0.0.1:9\n"
        "      method: warm.v1.Catalog/GetItem\n      plaintext: true\n"
        "      metadata: {authorization: 'Bearer ${API_TOKEN}'}\n"
    )
    token = "s3cr3t-token-value"  # noqa: S105 - a test value, checked to stay hidden
    shown = run_cli("validate", "--config", str(path), env={"API_TOKEN": token})
    assert shown.returncode == 0, shown.stderr
    assert token not in shown.stdout + shown.stderr
    path.write_text(
        path.read_text().replace("'Bearer ${API_TOKEN}'", "'Bearer ${API_TOKEN}{{ nope }}'")
    )
    refused = run_cli("validate", "--config", str(path), env={"API_TOKEN": token})
    assert refused.returncode == 2
    assert "targets[0].grpc.metadata.authorization" in refused.stderr
    assert token not in refused.stdout + refused.stderr
