"""Every change to the organisation: `check_*` validates and raises ValidationError({field: message}),
`do_*` writes atomically together with its audit row.

Pages, the API and the management commands all call these, so a rule lives in one place.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Model
from django.http import HttpRequest
from django.utils import timezone

from glasshouse.audit.actions import record, record_change
from glasshouse.org import csvio
from glasshouse.org.models import ImportStatus, Office, PeopleImport, Person, Team, valid_time_zone
from glasshouse.org.validation import (
    PersonInput,
    describe_reporting_loop,
    describe_team_loop,
    find_loops,
    person_field_errors,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

    Actor = User | AnonymousUser | None

logger = logging.getLogger(__name__)


def person_snapshot(person: Person) -> dict[str, Any]:
    """A person as the audit trail shows them: related records by name, not by id."""
    return {
        "full_name": person.full_name,
        "email": person.email,
        "employee_number": person.employee_number,
        "job_title": person.job_title,
        "team": person.team.name if person.team else None,
        "manager": person.manager.email if person.manager else None,
        "location": person.location_label,
        "time_zone": person.time_zone,
        "work_start": person.work_start,
        "work_end": person.work_end,
        "work_days": person.work_days,
        "employment_type": person.employment_type,
        "start_date": person.start_date,
        "status": person.status,
    }


# --- people ---------------------------------------------------------------------------------


def check_person(data: PersonInput, person: Person | None = None) -> None:
    errors = person_field_errors(data)
    others = Person.objects.exclude(pk=person.pk) if person else Person.objects.all()
    if "email" not in errors and (clash := others.filter(email__iexact=data.email).first()):
        errors["email"] = f"{data.email} is already used by {clash.full_name} ({clash.employee_number})."
    if "employee_number" not in errors and (clash := others.filter(employee_number=data.employee_number).first()):
        errors["employee_number"] = f"Employee number {data.employee_number} already belongs to {clash.full_name}."
    if person is not None and data.manager is not None:
        if data.manager.pk == person.pk:
            errors["manager"] = "A person cannot be their own manager."
        elif loop := _reporting_loop(person, data.manager):
            errors["manager"] = loop
    if errors:
        raise ValidationError(errors)


def _reporting_loop(person: Person, manager: Person) -> str | None:
    managers = dict(Person.objects.values_list("pk", "manager_id"))
    managers[person.pk] = manager.pk
    loops = find_loops([person.pk], managers.get)
    if not loops:
        return None
    names = dict(Person.objects.filter(pk__in=loops[0]).values_list("pk", "full_name"))
    return describe_reporting_loop([names[pk] for pk in loops[0]])


def do_create_person(actor: Actor, data: PersonInput, *, request: HttpRequest | None = None) -> Person:
    with transaction.atomic():
        check_person(data)
        person = Person.objects.create(**data.model_fields())
        record(actor=actor, action="org.person.create", target=person, after=person_snapshot(person), request=request)
    return person


def do_update_person(actor: Actor, person: Person, data: PersonInput, *, request: HttpRequest | None = None) -> Person:
    with transaction.atomic():
        check_person(data, person)
        before = person_snapshot(person)
        for name, value in data.model_fields().items():
            setattr(person, name, value)
        person.save()
        record_change(
            actor=actor,
            action="org.person.update",
            target=person,
            before=before,
            after=person_snapshot(person),
            request=request,
        )
    return person


# --- teams ----------------------------------------------------------------------------------


def check_team(name: str, parent: Team | None, team: Team | None = None) -> None:
    errors: dict[str, str] = {}
    others = Team.objects.exclude(pk=team.pk) if team else Team.objects.all()
    if not name:
        errors["name"] = "A team name is required."
    elif len(name) > 150:
        errors["name"] = f"At most 150 characters (this has {len(name)})."
    elif others.filter(name__iexact=name).exists():
        errors["name"] = f"There is already a team called {name}."
    if team is not None and parent is not None:
        parents = dict(Team.objects.values_list("pk", "parent_id"))
        parents[team.pk] = parent.pk
        loops = find_loops([team.pk], parents.get)
        if loops:
            names = dict(Team.objects.filter(pk__in=loops[0]).values_list("pk", "name"))
            errors["parent"] = describe_team_loop([names[pk] for pk in loops[0]])
    if errors:
        raise ValidationError(errors)


def _team_snapshot(team: Team) -> dict[str, Any]:
    return {"name": team.name, "parent": team.parent.name if team.parent else None}


def do_create_team(actor: Actor, name: str, parent: Team | None, *, request: HttpRequest | None = None) -> Team:
    name = name.strip()
    with transaction.atomic():
        check_team(name, parent)
        team = Team.objects.create(name=name, parent=parent)
        record(actor=actor, action="org.team.create", target=team, after=_team_snapshot(team), request=request)
    return team


def do_update_team(
    actor: Actor, team: Team, name: str, parent: Team | None, *, request: HttpRequest | None = None
) -> Team:
    name = name.strip()
    with transaction.atomic():
        check_team(name, parent, team)
        before = _team_snapshot(team)
        team.name, team.parent = name, parent
        team.save()
        record_change(
            actor=actor,
            action="org.team.update",
            target=team,
            before=before,
            after=_team_snapshot(team),
            request=request,
        )
    return team


# --- offices --------------------------------------------------------------------------------


def check_office(name: str, time_zone: str) -> None:
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "An office name is required."
    elif name.lower() == csvio.REMOTE.lower():
        errors["name"] = f"'{csvio.REMOTE}' means working from no office; choose another name."
    elif Office.objects.filter(name__iexact=name).exists():
        errors["name"] = f"There is already an office called {name}."
    if not valid_time_zone(time_zone):
        errors["time_zone"] = f"Unknown time zone '{time_zone}'; use a name such as Europe/London or UTC."
    if errors:
        raise ValidationError(errors)


def do_create_office(
    actor: Actor,
    name: str,
    time_zone: str,
    city: str = "",
    country: str = "",
    *,
    request: HttpRequest | None = None,
) -> Office:
    name, time_zone = name.strip(), time_zone.strip()
    with transaction.atomic():
        check_office(name, time_zone)
        office = Office.objects.create(name=name, city=city.strip(), country=country.strip(), time_zone=time_zone)
        record(
            actor=actor,
            action="org.office.create",
            target=office,
            after={"name": name, "city": office.city, "country": office.country, "time_zone": time_zone},
            request=request,
        )
    return office


# --- CSV export and import ------------------------------------------------------------------


def do_export_people(actor: Actor, *, request: HttpRequest | None = None) -> str:
    """Everyone, every field, as CSV; the audit row records that the whole register left."""
    people = list(Person.objects.select_related("team", "manager", "office").order_by("employee_number"))
    with transaction.atomic():
        text = csvio.write_people(people)
        record(
            actor=actor,
            action="org.people.export",
            target_label="people register",
            after={"people": len(people)},
            request=request,
        )
    return text


def do_create_import(
    actor: Actor, filename: str, data: bytes, *, background: bool = True, request: HttpRequest | None = None
) -> PeopleImport:
    """Store an upload and, once committed, validate and write it off the request.

    Raises ValidationError({"file": ...}) for bytes that are not a CSV text file; everything
    else is reported row by row on the import's page.
    """
    text = csvio.decode(data)
    with transaction.atomic():
        job = PeopleImport.objects.create(
            created_by=actor if actor is not None and actor.is_authenticated else None,
            filename=filename[:255],
            content=text,
        )
        if background:
            transaction.on_commit(lambda: start_import_thread(job.pk))
    return job


def start_import_thread(import_id: int) -> threading.Thread:
    thread = threading.Thread(
        target=_run_import_and_close, args=(import_id,), name=f"people-import-{import_id}", daemon=True
    )
    thread.start()
    return thread


def _run_import_and_close(import_id: int) -> None:
    try:
        run_import(import_id)
    finally:
        # A thread gets its own connection; nobody else will close it.
        connection.close()


PROGRESS_EVERY = 500
MAX_STORED_ERRORS = 500


def run_import(
    import_id: int, *, on_progress: Callable[[PeopleImport], None] | None = None, actor_label: str = ""
) -> PeopleImport:
    """Validate the whole file, then write all of it or none of it.

    Progress is saved every PROGRESS_EVERY rows, each save committed on its own so the status
    page sees it. Any unexpected error marks the import FAILED instead of leaving it running.
    """
    job = PeopleImport.objects.select_related("created_by").get(pk=import_id)

    def progress(done: int, total: int) -> None:
        job.processed_rows, job.total_rows = done, total
        PeopleImport.objects.filter(pk=job.pk).update(processed_rows=done, total_rows=total)
        if on_progress is not None:
            on_progress(job)

    try:
        result = csvio.validate(job.content, progress=progress, every=PROGRESS_EVERY)
        if result.errors:
            _finish(job, ImportStatus.INVALID, errors=_capped(result.errors))
        else:
            job.status = ImportStatus.IMPORTING
            PeopleImport.objects.filter(pk=job.pk).update(status=job.status)
            if on_progress is not None:
                on_progress(job)
            _write_import(job, result.rows, actor_label=actor_label)
    except Exception as exc:
        logger.exception("people import %s failed", import_id)
        _finish(job, ImportStatus.FAILED, errors=[{"row": None, "field": "", "value": "", "message": f"{exc}"}])
    if on_progress is not None:
        on_progress(job)
    return job


def _capped(errors: list[csvio.RowError]) -> list[dict[str, Any]]:
    stored: list[dict[str, Any]] = [e.as_dict() for e in errors[:MAX_STORED_ERRORS]]
    if len(errors) > MAX_STORED_ERRORS:
        rest = len(errors) - MAX_STORED_ERRORS
        stored.append({"row": None, "field": "", "value": "", "message": f"… and {rest:,} more problems not listed."})
    return stored


_ATTNAMES = {f.name: f.attname for f in Person._meta.concrete_fields}


def _stored(value: object) -> object:
    return value.pk if isinstance(value, Model) else value


def _finish(job: PeopleImport, status: ImportStatus, **fields: Any) -> None:
    job.status, job.finished_at = status, timezone.now()
    for name, value in fields.items():
        setattr(job, name, value)
    job.save()


def _write_import(job: PeopleImport, rows: list[csvio.ImportRow], *, actor_label: str) -> None:
    """People first, then managers (who may be new themselves), all in one transaction.

    Only cells that changed are written: bulk_update builds a CASE branch per person and field,
    so rewriting unchanged cells is what would make re-importing 10,000 people slow.
    """
    with transaction.atomic():
        changed_cells: dict[str, list[Person]] = defaultdict(list)
        changed: set[str] = set()
        new: list[Person] = []
        for row in rows:
            values = row.data.model_fields()
            del values["manager"]
            if row.existing is None:
                new.append(Person(**values))
                continue
            for name, value in values.items():
                attname, stored = _ATTNAMES[name], _stored(value)
                if getattr(row.existing, attname) != stored:
                    setattr(row.existing, attname, stored)
                    changed_cells[name].append(row.existing)
                    changed.add(row.data.employee_number)
        # Existing people first: one of them may be giving up the e-mail a newcomer takes.
        for name, people in changed_cells.items():
            Person.objects.bulk_update(people, [name], batch_size=500)
        Person.objects.bulk_create(new, batch_size=500)

        ids = dict(Person.objects.values_list("employee_number", "pk"))
        reports_of: dict[int | None, list[int]] = defaultdict(list)
        for row in rows:
            manager_id = ids[row.manager_number] if row.manager_number else None
            current = row.existing.manager_id if row.existing is not None else None
            if manager_id != current:
                reports_of[manager_id].append(ids[row.data.employee_number])
                if row.existing is not None:
                    changed.add(row.data.employee_number)
        # One UPDATE per manager: a file has far fewer managers than people.
        for manager_id, pks in reports_of.items():
            for start in range(0, len(pks), 500):
                Person.objects.filter(pk__in=pks[start : start + 500]).update(manager_id=manager_id)

        updated = len(changed)
        _finish(job, ImportStatus.DONE, created_count=len(new), updated_count=updated, processed_rows=len(rows))
        record(
            actor=job.created_by,
            actor_label=actor_label,
            action="org.people.import",
            target=job,
            target_label=job.filename,
            after={
                "rows": len(rows),
                "created": len(new),
                "updated": updated,
                "unchanged": len(rows) - len(new) - updated,
            },
        )
