"""Every URL in the project, requested by every persona, answers with the expected status.

The expectations live in each app's `tests/matrix.py`. A URL pattern without an entry fails
`test_every_url_has_an_entry`, so new views must declare who may see them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from conftest import PERSONA_NAMES, Personas

MATRIX_MODULES = (
    "glasshouse.core.tests.matrix",
    "glasshouse.org.tests.matrix",
    "glasshouse.devices.tests.matrix",
    "glasshouse.ingest.tests.matrix",
    "glasshouse.controls.tests.matrix",
    "glasshouse.reports.tests.matrix",
    "glasshouse.alerts.tests.matrix",
    "glasshouse.activity.tests.matrix",
)
Entry = tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]


def all_entries() -> list[Entry]:
    entries: list[Entry] = []
    for module in MATRIX_MODULES:
        entries.extend(importlib.import_module(module).MATRIX)
    return entries


def url_names(patterns: list[URLPattern | URLResolver] | None = None, ns: str = "") -> Iterator[str]:
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            sub = f"{ns}{p.namespace}:" if p.namespace else ns
            yield from url_names(p.url_patterns, sub)
        elif p.name:
            yield f"{ns}{p.name}"
        else:
            yield f"{ns}<unnamed {p.pattern}>"


def test_every_url_has_an_entry() -> None:
    covered = {name for name, _, _ in all_entries()}
    missing = sorted(set(url_names()) - covered)
    assert missing == [], f"URLs without a role matrix entry: {missing}"


def test_every_entry_names_every_persona() -> None:
    for name, _, expected in all_entries():
        assert set(expected) == {*PERSONA_NAMES, "anonymous"}, name


CASES = [
    (name, kwargs, persona, expected[persona])
    for name, kwargs, expected in all_entries()
    for persona in (*PERSONA_NAMES, "anonymous")
]


@pytest.mark.parametrize(("url_name", "kwargs", "persona", "status"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_role_matrix(
    client_for: Callable[[str], object],
    personas: Personas,
    url_name: str,
    kwargs: Callable[[Personas], dict[str, object]],
    persona: str,
    status: int,
) -> None:
    client = client_for(persona)
    response = client.get(reverse(url_name, kwargs=kwargs(personas)))  # type: ignore[attr-defined]
    assert response.status_code == status, f"{url_name} as {persona}: {response.status_code}"


def test_menu_offers_only_pages_the_viewer_may_open(personas: Personas, client_for: Callable[[str], object]) -> None:
    """Every link in a persona's menu opens for that persona: no menu item leads to a refusal."""
    from glasshouse.access.roles import person_of, roles_of
    from glasshouse.core.context_processors import menu_for

    for name in PERSONA_NAMES:
        user = personas.by_name(name)
        client = client_for(name)
        for item in menu_for(roles_of(user), person_of(user) is not None):
            status = client.get(item.url).status_code  # type: ignore[attr-defined]
            assert status in (200, 302), f"{name}: menu item {item.label} answers {status}"
