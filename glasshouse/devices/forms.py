"""Forms for tokens, device assignment and policies. They shape input only; the rules live in
`devices.actions`, whose ValidationError keys match these field names."""

from __future__ import annotations

from django import forms

from glasshouse.devices.models import ScheduleMode


class TokenForm(forms.Form):
    label = forms.CharField(max_length=100, help_text="Who or what the token is for, e.g. “Sales laptops, March”.")
    expires_in_days = forms.IntegerField(min_value=1, max_value=90, initial=7, label="Expires in (days)")
    max_uses = forms.IntegerField(
        min_value=1, max_value=10_000, initial=1, label="Number of devices", help_text="Each enrolment uses one."
    )
    person_email = forms.EmailField(
        required=False,
        label="Belongs to (e-mail)",
        help_text="Optional: devices enrolled with this token are assigned to this person.",
    )


class AssignForm(forms.Form):
    email = forms.EmailField(required=False, label="Person's e-mail", help_text="Leave blank to unassign.")


class PolicyForm(forms.Form):
    collect_window = forms.BooleanField(required=False, label="Active application and window")
    collect_titles = forms.BooleanField(required=False, label="Window titles")
    collect_idle = forms.BooleanField(required=False, label="Active and idle time")
    collect_sessions = forms.BooleanField(required=False, label="Logins, logouts and screen lock")
    collect_browser = forms.BooleanField(required=False, label="Browser tab domain")
    idle_threshold_seconds = forms.IntegerField(label="Idle after (seconds)", help_text="Default 300 (5 minutes).")
    pulse_seconds = forms.IntegerField(label="Pulse (seconds)", help_text="Identical states closer than this merge.")
    schedule_mode = forms.ChoiceField(choices=ScheduleMode.choices, label="Collect")
    max_batch_spans = forms.IntegerField(label="Spans per upload (at most 1000)")
    max_batch_seconds = forms.IntegerField(label="Seconds between uploads")
    spool_max_rows = forms.IntegerField(label="Offline spool: most rows kept")
    spool_max_age_days = forms.IntegerField(label="Offline spool: oldest kept (days)")
