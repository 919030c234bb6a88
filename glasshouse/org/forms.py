"""Forms for people, teams, offices and the CSV upload. They only shape input: the rules live in
`org.actions`, whose ValidationError keys match these field names.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from django import forms

from glasshouse.org.models import WEEKDAYS, EmploymentType, Office, Person, PersonStatus, Team
from glasshouse.org.validation import PersonInput


def _time_zone_field(**kwargs: Any) -> forms.ChoiceField:
    zones = sorted(zoneinfo.available_timezones())
    return forms.ChoiceField(choices=[(z, z) for z in zones], initial="UTC", **kwargs)


class PersonForm(forms.Form):
    full_name = forms.CharField(max_length=200)
    email = forms.EmailField(label="Work e-mail")
    employee_number = forms.CharField(max_length=32)
    job_title = forms.CharField(max_length=150, required=False)
    team = forms.ModelChoiceField(Team.objects.all(), required=False, empty_label="No team")
    # An e-mail rather than a drop-down: the list of possible managers runs to thousands.
    manager = forms.EmailField(
        label="Manager's e-mail", required=False, help_text="Leave blank for someone at the top of the organisation."
    )
    office = forms.ModelChoiceField(Office.objects.all(), required=False, empty_label="Remote", label="Location")
    time_zone = _time_zone_field()
    work_start = forms.TimeField(initial=dt.time(9, 0), widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    work_end = forms.TimeField(
        initial=dt.time(17, 0),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="May be earlier than the start for a shift that crosses midnight.",
    )
    work_days = forms.MultipleChoiceField(
        choices=[(d, d.capitalize()) for d in WEEKDAYS],
        # The stacked form style stretches inputs to full width; a checkbox should keep its size.
        widget=forms.CheckboxSelectMultiple(attrs={"style": "width:auto"}),
        initial=list(WEEKDAYS[:5]),
    )
    employment_type = forms.ChoiceField(choices=EmploymentType.choices)
    start_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    status = forms.ChoiceField(choices=PersonStatus.choices)

    def clean_manager(self) -> Person | None:
        email: str = self.cleaned_data["manager"]
        if not email:
            return None
        manager = Person.objects.filter(email__iexact=email.strip()).first()
        if manager is None:
            raise forms.ValidationError(f"Nobody in the organisation has the e-mail {email}.")
        return manager

    def to_input(self) -> PersonInput:
        data = self.cleaned_data
        return PersonInput(
            full_name=data["full_name"],
            email=data["email"],
            employee_number=data["employee_number"],
            job_title=data["job_title"],
            team=data["team"],
            manager=data["manager"],
            office=data["office"],
            time_zone=data["time_zone"],
            work_start=data["work_start"],
            work_end=data["work_end"],
            work_days=tuple(data["work_days"]),
            employment_type=data["employment_type"],
            start_date=data["start_date"],
            status=data["status"],
        )

    @staticmethod
    def initial_for(person: Person) -> dict[str, Any]:
        return {
            "full_name": person.full_name,
            "email": person.email,
            "employee_number": person.employee_number,
            "job_title": person.job_title,
            "team": person.team,
            "manager": person.manager.email if person.manager else "",
            "office": person.office,
            "time_zone": person.time_zone,
            "work_start": person.work_start,
            "work_end": person.work_end,
            "work_days": person.work_days_list,
            "employment_type": person.employment_type,
            "start_date": person.start_date,
            "status": person.status,
        }


class TeamForm(forms.Form):
    name = forms.CharField(max_length=150)
    parent = forms.ModelChoiceField(
        Team.objects.all(), required=False, empty_label="None: a top-level team", label="Part of"
    )


class OfficeForm(forms.Form):
    name = forms.CharField(max_length=100)
    city = forms.CharField(max_length=100, required=False)
    country = forms.CharField(max_length=100, required=False)
    time_zone = _time_zone_field()


class ImportForm(forms.Form):
    file = forms.FileField(label="CSV file", widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}))
