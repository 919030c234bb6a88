"""Forms for the report and classification pages. They shape input; rule checks live in
`reports.actions.check_rule`, whose ValidationError keys match these field names."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms

from glasshouse.activity.models import UsageKind
from glasshouse.org.models import Team
from glasshouse.reports.models import RULE_CATEGORIES, MatchKind
from glasshouse.reports.overview import MAX_DAYS, Filters


def _choices(form: forms.Form, name: str, choices: list[tuple[str, str]]) -> None:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    field.choices = choices


class OverviewFilterForm(forms.Form):
    """Every report's filters, from the query string (so a link carries them). A report with
    more filters subclasses it and names its fields in `EXTRA`."""

    EXTRA: tuple[str, ...] = ()

    team = forms.ChoiceField(required=False, label="Team (with its sub-teams)")
    office = forms.ChoiceField(required=False, label="Location")
    from_ = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    to = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data: Any, teams: list[Team], offices: list[tuple[str, str]]) -> None:
        default = Filters.default()
        merged = {"from_": default.first_day.isoformat(), "to": default.last_day.isoformat()}
        for key in ("team", "office", "to", *self.EXTRA):
            if data.get(key):
                merged[key] = data[key]
        if data.get("from"):
            merged["from_"] = data["from"]
        super().__init__(merged)
        self.teams = {str(t.pk): t for t in teams}
        _choices(self, "team", [("", "Every team"), *((str(t.pk), t.name) for t in teams)])
        _choices(self, "office", offices)
        self.office_labels = dict(offices)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, last = data.get("from_"), data.get("to")
        if isinstance(first, dt.date) and isinstance(last, dt.date):
            if last < first:
                self.add_error("to", "The end date is before the start date.")
            elif (last - first).days + 1 > MAX_DAYS:
                self.add_error("to", f"Choose at most {MAX_DAYS} days.")
        return data

    def filters(self) -> Filters:
        data = self.cleaned_data
        office = data.get("office") or ""
        return Filters(
            first_day=data["from_"],
            last_day=data["to"],
            team=self.teams.get(data.get("team") or ""),
            office=office,
            office_label=self.office_labels.get(office, "") if office else "",
        )


class SoftwareFilterForm(OverviewFilterForm):
    """Plus the licence-reclaim choice: an application name or a site's domain, exactly as the
    utilisation table shows it."""

    EXTRA = ("licence", "licence_kind")
    licence = forms.CharField(required=False, max_length=255, label="Licence reclaim for")
    licence_kind = forms.ChoiceField(required=False, choices=[("app", "Application"), ("site", "Site")], label="Kind")

    def reclaim_params(self) -> dict[str, str]:
        name = (self.cleaned_data.get("licence") or "").strip()
        if not name:
            return {}
        return {"licence": name, "licence_kind": self.cleaned_data.get("licence_kind") or "app"}


class RuleForm(forms.Form):
    team = forms.ChoiceField(required=False, label="Applies to")
    match = forms.ChoiceField(choices=MatchKind.choices, label="Matches")
    value = forms.CharField(
        max_length=255,
        help_text="An application name (Slack), a domain (example.com also covers www.example.com) or a "
        "pattern with * and ? (*.example.com, Microsoft *). Case does not matter.",
    )
    category = forms.TypedChoiceField(choices=RULE_CATEGORIES, coerce=int)

    def __init__(self, *args: Any, teams: list[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teams = {str(t.pk): t for t in teams}
        _choices(self, "team", [("", "Organisation default"), *((str(t.pk), t.name) for t in teams)])

    def clean_team(self) -> Team | None:
        return self.teams.get(self.cleaned_data.get("team") or "")


class CategoryForm(forms.Form):
    category = forms.TypedChoiceField(choices=RULE_CATEGORIES, coerce=int)


class ClassifyForm(forms.Form):
    kind = forms.TypedChoiceField(choices=[(UsageKind.APP, "app"), (UsageKind.SITE, "site")], coerce=int)
    subject = forms.IntegerField(min_value=1)
    category = forms.TypedChoiceField(choices=RULE_CATEGORIES, coerce=int)


class CheckForm(forms.Form):
    """ "Which rule decides?" on the rules page."""

    check_kind = forms.TypedChoiceField(
        choices=[(UsageKind.APP, "Application"), (UsageKind.SITE, "Site")], coerce=int, label="Kind"
    )
    check_value = forms.CharField(max_length=255, label="Name or domain")
    check_team = forms.ChoiceField(required=False, label="For a member of")

    def __init__(self, *args: Any, teams: list[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "check_team", [("", "No team (organisation default)"), *((str(t.pk), t.name) for t in teams)])
