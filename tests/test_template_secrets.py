"""A template that uses a secret never shows what it renders: not in start-up errors, not in a
later render's error. Whatever it does to the secret (``| upper``, ``| reverse``, ...), only the
template's own text is shown, redacted."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import jinja2
import pytest

from warmgate.config.loader import load_config
from warmgate.kernel.errors import ConfigError, TemplateError
from warmgate.traffic.targets import compile_config
from warmgate.traffic.templating import Templates

TOKEN = "Zq7xKd93LmPq0vRt5sWy2bNc8hJf4gTe"  # noqa: S105 - planted to be hidden
RUN = 8
"""No run of this many characters of the secret, as the template transformed it, may show."""

TRANSFORMS = {
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "capitalize": str.capitalize,
    "reverse": lambda text: text[::-1],
    "urlencode": urllib.parse.quote,
    "replace('Zq', 'Qz')": lambda text: text.replace("Zq", "Qz"),
    "list | join('-')": "-".join,
    "batch(4) | map('join') | join('.')": lambda text: ".".join(
        text[index : index + 4] for index in range(0, len(text), 4)
    ),
}


def runs(text: str) -> set[str]:
    """Every run of :data:`RUN` characters of ``text``."""
    return {text[index : index + RUN] for index in range(len(text) - RUN + 1)}


def assert_nothing_of(message: str, *forms: str) -> None:
    """``message`` shows no run of any of ``forms``."""
    for form in forms:
        shown = [run for run in runs(form) if run in message]
        assert not shown, f"{shown[0]!r} shows in: {message}"


def compile_error(url: str, directory: Path) -> str:
    """The error of compiling a config file whose one target's URL template is ``url``, with
    the secret in ``$API_TOKEN``."""
    path = directory / "warmgate.yaml"
    path.write_text(json.dumps({"targets": [{"http": {"url": url}}]}))
    config, secrets = load_config(path, environ={"API_TOKEN": TOKEN})
    with pytest.raises(ConfigError) as caught:
        compile_config(config, lambda _: None, secrets=secrets)
    return str(caught.value)


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_a_transformed_secret_in_a_url_never_shows(transform: str, tmp_path: Path) -> None:
    """A URL whose host renders a transformed ${VAR} secret, refused once rendered, shows the
    template with the secret masked and nothing of what it rendered."""
    url = f"http://h{{{{ '${{API_TOKEN}}' | {transform} }}}}:99999/x"
    message = compile_error(url, tmp_path)
    assert message.startswith("targets[0].http.url: once rendered, it is not an http(s) URL")
    assert f"the template uses a secret: 'http://h{{{{ '***' | {transform} }}}}:99999/x'" in message
    assert_nothing_of(message, TOKEN, TRANSFORMS[transform](TOKEN))


def test_an_error_message_holding_a_transformed_secret_is_not_shown(tmp_path: Path) -> None:
    """An undefined key named by the secret (whose message would quote it) says only the kind of
    error; a misspelt function, a name in the template, is still named."""
    message = compile_error("http://h/{{ {}['${API_TOKEN}' | upper] }}", tmp_path)
    assert "the template failed to render (UndefinedError); what it renders is not shown" in message
    assert_nothing_of(message, TOKEN, TOKEN.upper())
    typo = compile_error("http://h/{{ randnt('${API_TOKEN}') }}", tmp_path)
    assert "'randnt' is undefined; the functions are randint" in typo
    assert_nothing_of(typo, TOKEN)


def test_a_later_render_of_a_secret_template_shows_nothing_rendered() -> None:
    """A render that fails after the first (a captured value that differs) raises an error that
    names the field and the kind of error, not the value."""
    templates = Templates()
    url = templates.compile(
        "http://h/{{ {'X': 1}[token | upper] }}", "steps[1].http.url", {"token": "x"}, {"token"}
    )
    assert url.render({"token": "x"}) == "http://h/1"
    with pytest.raises(TemplateError) as caught:
        url.render({"token": TOKEN})
    message = str(caught.value)
    assert message.startswith("steps[1].http.url: the template failed to render (UndefinedError)")
    assert_nothing_of(message, TOKEN, TOKEN.upper())


def test_a_template_without_secrets_still_shows_its_render(tmp_path: Path) -> None:
    """Templates that use no secret keep their helpful errors, the rendered value included."""
    message = compile_error("http://h{{ 1 }}:99999/x", tmp_path)
    assert "once rendered, 'http://h1:99999/x' has port '99999'" in message
    plain = Templates().compile("http://h/{{ {'x': 1}[token] }}", "url", {"token": "x"})
    with pytest.raises(jinja2.UndefinedError, match="has no attribute 'y'"):
        plain.render({"token": "y"})
