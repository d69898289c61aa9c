"""A template that is one call of randint, uuid4 or random with literal arguments renders without
Jinja2, and exactly what Jinja2 renders from the same random state; anything else still goes
through Jinja2's sandbox."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmgate.kernel.errors import TemplateError
from warmgate.kernel.redaction import Secrets
from warmgate.traffic.templating import Templates

PLAIN = st.text(st.characters(blacklist_characters="{}\r\n", codec="utf-8"), max_size=20)
WHOLE = st.integers(min_value=-(10**17), max_value=10**17)


def through_jinja(source: str) -> str:
    """``source`` rendered by Jinja2's sandbox (a template given variables never takes the
    plain call), with the random state seeded."""
    template = Templates().compile(source, "field", variables={})
    random.seed(7)
    return template.render()


def as_call(source: str) -> str:
    template = Templates().compile(source, "field")
    assert type(template).__name__ == "_Call", f"{source!r} was not read as a plain call"
    random.seed(7)
    return template.render()


@given(before=PLAIN, after=PLAIN, low=WHOLE, span=st.integers(0, 10**6), spaces=st.booleans())
def test_randint_renders_what_jinja_renders(
    before: str, after: str, low: int, span: int, spaces: bool
) -> None:
    """The same number, in the same text, from the same random state."""
    gap = " " if spaces else ""
    source = f"{before}{{{{{gap}randint({low},{gap}{low + span}){gap}}}}}{after}"
    rendered = as_call(source)
    assert rendered == through_jinja(source)
    assert low <= int(rendered[len(before) : len(rendered) - len(after)]) <= low + span


@pytest.mark.parametrize("source", ["{{ random() }}", "id={{ uuid4() }}&x=1"])
def test_random_and_uuid4_render_what_jinja_renders(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """random() from the same state, uuid4() from the same bytes."""
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=random.getrandbits(128), version=4))
    assert as_call(source) == through_jinja(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{ randint(1, 2) }}\n",  # Jinja2 drops one trailing newline
        "{{- randint(1, 2) }}",
        "{{ randint(1, 2) + 1 }}",
        "{{ randint(1, 2) | string }}",
        "{{ randint(1, 2) }}{{ randint(1, 2) }}",
        "{# c #}{{ randint(1, 2) }}",
        "{% if true %}{{ randint(1, 2) }}{% endif %}",
        "{{ randint(1, 1_000) }}",
        "{{ randint(0b1, 2) }}",
        "{{ choice([1, 2]) }}",
        "{{ uuid4() | upper }}",
    ],
)
def test_anything_else_goes_through_jinja(source: str) -> None:
    """Markup around or inside the call, other arguments or functions: Jinja2 renders it."""
    assert type(Templates().compile(source, "field", variables=None)).__name__ == "_Compiled"


def test_mistakes_still_surface_at_start_as_jinja_reports_them() -> None:
    """An empty range and a leading zero fail at start-up with Jinja2's sentences."""
    with pytest.raises(TemplateError, match="empty range"):
        Templates().compile("{{ randint(5, 1) }}", "field")
    with pytest.raises(TemplateError, match="syntax error"):
        Templates().compile("{{ randint(01, 2) }}", "field")


def test_a_template_holding_a_secret_stays_sensitive() -> None:
    """A call whose text holds a known secret is rendered by Jinja2 and shows nothing."""
    template = Templates(secrets=Secrets({"424242"})).compile("{{ randint(1, 424242) }}", "f")
    assert template.sensitive


def test_without_files_the_functions_are_the_same() -> None:
    """``Templates(files=False)`` renders the same calls plainly."""
    template = Templates(files=False).compile("{{ randint(3, 3) }}", "field")
    assert template.render() == "3"
    assert type(template).__name__ == "_Call"
