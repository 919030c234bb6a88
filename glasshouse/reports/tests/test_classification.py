"""Classification rules: precedence (team before organisation, exact before pattern, most
specific first), the rollups recomputed when a rule changes, new subjects classified as the
rollups meet them, and the uncategorised queue biggest first."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from conftest import ClientFor, Personas
from glasshouse.activity.models import Category, DailyUsage, HourlyUsage, InternedString, TeamDailyUsage, UsageKind
from glasshouse.activity.rollups import roll_up_pending
from glasshouse.audit.models import AuditEntry
from glasshouse.devices.models import AgentPolicy
from glasshouse.ingest.tests.helpers import T0, Agent, window
from glasshouse.org.models import Team
from glasshouse.reports import actions
from glasshouse.reports.classify import Rule, RuleBook
from glasshouse.reports.models import ClassificationRule, MatchKind

P, N, U, X = Category.PRODUCTIVE, Category.NEUTRAL, Category.UNPRODUCTIVE, Category.UNCATEGORISED
APP, SITE = UsageKind.APP, UsageKind.SITE


def post(client: Client, url: str, data: dict[str, Any]) -> Any:
    """A form post with the CSRF token, as the browser sends it."""
    client.get(reverse("core:home"))
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


@pytest.fixture
def collect_browser(db: None) -> None:
    AgentPolicy.objects.filter(team__isnull=True).update(collect_browser=True)


def browser(start: float, end: float, domain: str) -> dict[str, Any]:
    return {"kind": "browser", "start": start, "end": end, "app": "firefox", "domain": domain}


def test_precedence_team_before_organisation_exact_before_pattern_longest_first() -> None:
    # Teams: 1 company > 2 engineering > 3 platform; 4 sales.
    parents: dict[int, int | None] = {1: None, 2: 1, 3: 2, 4: 1}
    rules = [
        Rule(1, None, MatchKind.APP, "slack", P),
        Rule(2, None, MatchKind.APP_PATTERN, "sl*", U),
        Rule(3, 2, MatchKind.APP_PATTERN, "sla*", N),
        Rule(4, 3, MatchKind.APP, "slack", U),
        Rule(5, None, MatchKind.DOMAIN, "google.com", N),
        Rule(6, None, MatchKind.DOMAIN, "mail.google.com", P),
        Rule(7, None, MatchKind.DOMAIN_PATTERN, "*.google.com", U),
        Rule(8, None, MatchKind.APP_PATTERN, "microsoft *", P),
        Rule(9, None, MatchKind.APP_PATTERN, "microsoft s*", U),
    ]
    book = RuleBook(rules, parents)
    # Organisation: the exact rule beats the pattern that also matches; case does not matter.
    assert book.category(APP, "Slack") == P
    assert book.category(APP, "slides") == U
    # Sales follows the organisation default.
    assert book.category(APP, "slack", 4) == P
    # Engineering's own pattern beats the organisation's exact rule (team before organisation).
    assert book.category(APP, "slack", 2) == N
    # Platform inherits engineering's override for what its own rules do not name...
    assert book.category(APP, "slackbot", 3) == N
    # ...and its own exact rule beats the parent's pattern.
    assert book.category(APP, "slack", 3) == U
    decided = book.decide(APP, "slack", 3)
    assert decided is not None
    assert decided.pk == 4
    # Domains: the exact domain covers its subdomains and beats a pattern; the longest wins.
    assert book.category(SITE, "google.com") == N
    assert book.category(SITE, "docs.google.com") == N
    assert book.category(SITE, "inbox.mail.google.com") == P
    assert book.category(SITE, "notgoogle.com") == X
    # Among patterns the longer one wins.
    assert book.category(APP, "Microsoft Solitaire") == U
    assert book.category(APP, "Microsoft Word") == P
    # Nothing matches: uncategorised. An app rule never classifies a site.
    assert book.category(APP, "vim") == X
    assert book.category(SITE, "slack") == X
    # Resolution per team lists only the teams that differ from the organisation.
    assert book.resolve(APP, "slack") == (P, {2: N, 3: U})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("match", "value", "field"),
    [
        ("app_pattern", "slack", "value"),
        ("domain", "https://example.com/x", "value"),
        ("domain", "*.example.com", "value"),
        ("domain_pattern", "example .com*", "value"),
        ("app", "  ", "value"),
        ("title", "x", "match"),
    ],
)
def test_bad_rules_are_refused_whole(personas: Personas, match: str, value: str, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        actions.do_add_rule(personas.it_admin, None, match, value, int(P))
    assert field in exc.value.message_dict
    assert not ClassificationRule.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="reports.").exists()


def _categories(model: type[Any], value: str) -> set[int]:
    return set(model.objects.filter(subject__value=value).values_list("category", flat=True))


@pytest.mark.django_db
def test_changing_a_rule_rewrites_stored_rollups_per_team(personas: Personas) -> None:
    sales_person, it_person = personas.person("employee"), personas.person("it_admin")
    for n, person in enumerate((sales_person, it_person)):
        Agent.enrolled(person).send({"batch_seq": 1, "spans": [window(T0 + n, T0 + 600, app="Solitaire")]})
    roll_up_pending()
    assert _categories(DailyUsage, "Solitaire") == {X}
    rule = actions.do_add_rule(personas.it_admin, None, "app", "solitaire", int(U))
    for model in (HourlyUsage, DailyUsage, TeamDailyUsage):
        assert _categories(model, "Solitaire") == {U}
    # A team override changes only that team's rows (and its members' rows).
    override = actions.do_add_rule(personas.it_admin, personas.sales_team, "app_pattern", "sol*", int(N))
    assert set(TeamDailyUsage.objects.values_list("team__name", "category")) == {("Sales", N), ("IT", U)}
    assert set(DailyUsage.objects.values_list("person__team__name", "category")) == {("Sales", N), ("IT", U)}
    actions.do_change_rule(personas.it_admin, rule, int(P))
    assert set(TeamDailyUsage.objects.values_list("team__name", "category")) == {("Sales", N), ("IT", P)}
    actions.do_remove_rule(personas.it_admin, override)
    actions.do_remove_rule(personas.it_admin, rule)
    for model in (HourlyUsage, DailyUsage, TeamDailyUsage):
        assert _categories(model, "Solitaire") == {X}
    assert list(
        AuditEntry.objects.filter(action__startswith="reports.rule").order_by("seq").values_list("action", flat=True)
    ) == [
        "reports.rule.create",
        "reports.rule.create",
        "reports.rule.update",
        "reports.rule.delete",
        "reports.rule.delete",
    ]


@pytest.mark.django_db
def test_rules_classify_subjects_the_rollups_meet_later(personas: Personas, collect_browser: None) -> None:
    actions.do_add_rule(personas.it_admin, None, "domain_pattern", "*.example.com", int(P))
    actions.do_add_rule(personas.it_admin, personas.sales_team, "domain", "shop.example.com", int(U))
    agent = Agent.enrolled(personas.person("employee"))
    spans = [browser(T0, T0 + 60, "docs.example.com"), browser(T0 + 60, T0 + 120, "shop.example.com")]
    assert agent.send({"batch_seq": 1, "spans": spans}).status_code == 200
    roll_up_pending()
    assert _categories(DailyUsage, "docs.example.com") == {P}
    # The sales member's rows carry the sales override from the first write.
    assert _categories(DailyUsage, "shop.example.com") == {U}
    assert _categories(TeamDailyUsage, "shop.example.com") == {U}


@pytest.mark.django_db
def test_uncategorised_queue_biggest_first_and_one_click(
    personas: Personas, client_for: ClientFor, collect_browser: None
) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    today = dt.datetime.combine(dt.date.today() - dt.timedelta(days=1), dt.time(12), dt.UTC).timestamp()
    spans = [
        window(today, today + 60, app="small"),
        window(today + 60, today + 3660, app="big"),
        browser(today, today + 600, "medium.test"),
        window(today + 3660, today + 3700, app="known"),
    ]
    assert agent.send({"batch_seq": 1, "spans": spans}).status_code == 200
    roll_up_pending()
    actions.do_add_rule(personas.it_admin, None, "app", "known", int(N))
    page = client_for("it_admin").get(reverse("reports:uncategorised"))
    assert [r["subject__value"] for r in page.context["rows"]] == ["big", "medium.test", "small"]
    # Security analysts see the queue without the buttons and cannot classify.
    security = client_for("security")
    assert b"Classify as" not in security.get(reverse("reports:uncategorised")).content
    big = InternedString.objects.get(value="big")
    body = {"kind": int(APP), "subject": big.pk, "category": int(P)}
    for name in ("security", "hr", "manager", "auditor"):
        assert post(client_for(name), reverse("reports:classify"), body).status_code == 403
    assert not ClassificationRule.objects.filter(value="big").exists()
    response = post(client_for("it_admin"), reverse("reports:classify"), body)
    assert response.status_code == 302
    assert ClassificationRule.objects.get(value="big").category == P
    assert _categories(DailyUsage, "big") == {P}
    page = client_for("it_admin").get(reverse("reports:uncategorised"))
    assert [r["subject__value"] for r in page.context["rows"]] == ["medium.test", "small"]


@pytest.mark.django_db
def test_rules_page_explains_which_rule_decides(personas: Personas, client_for: ClientFor) -> None:
    actions.do_add_rule(personas.it_admin, None, "app", "slack", int(P))
    actions.do_add_rule(personas.it_admin, personas.sales_team, "app_pattern", "sla*", int(U))
    client = client_for("security")
    query: dict[str, Any] = {"check_kind": int(APP), "check_value": "Slack", "check_team": personas.sales_team.pk}
    page = client.get(reverse("reports:rules"), query)
    assert page.status_code == 200
    assert page.context["decision"]["rule"].team == personas.sales_team
    assert b"Which rule wins" in page.content
    # Security analysts read the rules but get no edit form.
    assert b"Add a rule" not in page.content
    response = post(
        client_for("it_admin"),
        reverse("reports:rule_add"),
        {"team": "", "match": "app_pattern", "value": "zoom", "category": int(P)},
    )
    assert response.status_code == 400
    assert "wildcard" in str(response.context["form"].errors["value"])
    response = post(
        client_for("it_admin"),
        reverse("reports:rule_add"),
        {"team": str(personas.it_team.pk), "match": "domain", "value": "Example.COM", "category": int(N)},
    )
    assert response.status_code == 302
    assert ClassificationRule.objects.filter(team=personas.it_team, value="example.com").exists()
    assert Team.objects.count() == 4
