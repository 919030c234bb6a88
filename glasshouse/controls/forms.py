"""Forms for the control pages. They shape input only; the rules are in `controls.validation`,
whose ValidationError keys match these field names."""

from __future__ import annotations

from django import forms

from glasshouse.controls.models import RuleAction, RuleKind, UsbClass, Verdict
from glasshouse.devices.models import Device
from glasshouse.org.models import WEEKDAYS

DAY_CHOICES = [(d, d.capitalize()) for d in WEEKDAYS]


class UsbOptionsForm(forms.Form):
    storage = forms.ChoiceField(choices=Verdict.choices, label=UsbClass.STORAGE.label)
    mtp = forms.ChoiceField(choices=Verdict.choices, label=UsbClass.MTP.label)
    printer = forms.ChoiceField(choices=Verdict.choices, label=UsbClass.PRINTER.label)
    network = forms.ChoiceField(choices=Verdict.choices, label=UsbClass.NETWORK.label)
    hid = forms.ChoiceField(choices=Verdict.choices, label=UsbClass.HID.label)
    other = forms.ChoiceField(choices=Verdict.choices, label=UsbClass.OTHER.label)
    block_unknown_keyboards = forms.BooleanField(
        required=False,
        label="Block unknown keyboards",
        help_text="A device that presents a keyboard and is not on the allow list is blocked, "
        "even when keyboards and mice are allowed (HID-injection sticks pose as keyboards).",
    )
    track_files = forms.BooleanField(
        required=False,
        label="Record files written to removable media",
        help_text="Path, size, program and user of every file written to a USB stick or disk.",
    )

    def classes(self) -> dict[str, str]:
        return {c: self.cleaned_data[c] for c in UsbClass.values}


class AllowEntryForm(forms.Form):
    vid = forms.CharField(max_length=8, label="Vendor id (VID)", help_text="4 hex digits, e.g. 0781")
    pid = forms.CharField(max_length=8, label="Product id (PID)", help_text="4 hex digits, e.g. 5567")
    serial = forms.CharField(max_length=256, required=False, help_text="Empty: any device of this model.")
    label = forms.CharField(max_length=100, required=False, help_text="e.g. Finance backup stick")


class WebRuleForm(forms.Form):
    action = forms.ChoiceField(choices=RuleAction.choices)
    kind = forms.ChoiceField(choices=RuleKind.choices)
    value = forms.CharField(
        max_length=1024, help_text="A domain (example.com), a URL prefix (https://…) or a category name."
    )
    days = forms.MultipleChoiceField(
        choices=DAY_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave days and times empty for a rule that always holds.",
    )
    start = forms.TimeField(required=False, widget=forms.TimeInput(attrs={"type": "time"}))
    end = forms.TimeField(
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}),
        help_text="In each person's own time zone. Must be after the start (no overnight rules).",
    )


class FullUrlsForm(forms.Form):
    full_urls = forms.BooleanField(
        required=False,
        label="Full URLs and tab titles",
        help_text="Otherwise browser activity is recorded by domain only.",
    )


class AppEntryForm(forms.Form):
    name = forms.CharField(max_length=255, help_text="The program's process or file name, e.g. steam.")
    path = forms.CharField(
        max_length=1024, required=False, help_text="Optional: only this executable, e.g. /usr/games/steam."
    )


class CategoryForm(forms.Form):
    name = forms.CharField(max_length=40, help_text="Lower-case letters, digits and dashes, e.g. gambling.")
    description = forms.CharField(max_length=200, required=False)


class DomainForm(forms.Form):
    domain = forms.CharField(max_length=253, help_text="e.g. example.com (its subdomains are included).")


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    note = forms.CharField(max_length=500, required=False)


class OfflineCodeForm(forms.Form):
    device = forms.ModelChoiceField(
        queryset=Device.objects.none(), help_text="The computer the USB device will be plugged into."
    )
    vid = forms.CharField(max_length=8, label="Vendor id (VID)", help_text="4 hex digits, e.g. 0781")
    pid = forms.CharField(max_length=8, label="Product id (PID)", help_text="4 hex digits, e.g. 5567")
    serial = forms.CharField(
        max_length=256, required=False, help_text="Empty: any device of this model on that computer."
    )
    minutes = forms.IntegerField(initial=60, help_text="How long access lasts once the code is made (up to 7 days).")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["device"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Device.objects.active().select_related("person")
        field.label_from_instance = _device_label  # type: ignore[method-assign,assignment]


def _device_label(device: Device) -> str:
    return f"{device.hostname} ({device.person.full_name if device.person else 'unassigned'})"


class EventFilterForm(forms.Form):
    kind = forms.ChoiceField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From (UTC)")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To (UTC)")
