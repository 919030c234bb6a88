"""Forms for the alert pages. They shape input only; the rules are in `actions.check_rule`,
whose ValidationError keys match these field names."""

from __future__ import annotations

from typing import Any

from django import forms

from glasshouse.alerts.models import RULE_FIELDS, AlertStatus, Rule, Severity
from glasshouse.org.models import Team


class RuleForm(forms.ModelForm):  # type: ignore[type-arg]
    webhook_url = forms.URLField(required=False, max_length=500, assume_scheme="https", label="Webhook URL")
    webhook_secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="At least 16 characters; requests carry X-Glasshouse-Signature: sha256=HMAC of the body. "
        "Leave empty to keep the current secret.",
    )

    class Meta:
        model = Rule
        fields = list(RULE_FIELDS)
        labels = {
            "team": "Team (empty: everyone)",
            "minutes": "Minutes (threshold or grace period)",
            "usage_source": "Count time in",
            "domains": "Sites (one domain per line; covers subdomains)",
            "include_blocked": "Include every site the agent blocked",
            "usb_blocked_only": "Only blocked USB devices",
            "min_bytes": "Minimum file size (bytes)",
            "emails": "E-mail recipients (one per line)",
        }
        widgets = {"domains": forms.Textarea(attrs={"rows": 3}), "emails": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.order_by("name")  # type: ignore[attr-defined]

    def _post_clean(self) -> None:
        # The model's own validation runs in actions.check_rule (the one place the rules live).
        secret = self.cleaned_data.get("webhook_secret")
        super()._post_clean()  # type: ignore[misc]  # Django's hook, not in the stubs
        if secret:
            self.instance.webhook_secret = secret


class InboxFilterForm(forms.Form):
    severity = forms.ChoiceField(choices=[("", "any"), *Severity.choices], required=False)
    status = forms.ChoiceField(choices=[("", "any"), *AlertStatus.choices], required=False)


class CommentForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000, label="Comment")
