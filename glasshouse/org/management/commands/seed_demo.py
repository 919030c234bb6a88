"""Seed the demo organisation "Northwind Analytics": about 200 people in a tree of teams, three
offices plus remote staff, reporting lines, logins for everyone and one login per role.

Deterministic and idempotent: people are keyed on employee number, teams and offices on name,
logins on e-mail, so running it again changes nothing. The one place a default password exists;
it refuses to run unless DEBUG is on (development settings).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from glasshouse.accounts.models import RoleAssignment, User
from glasshouse.audit.actions import record
from glasshouse.core.roles import Role
from glasshouse.org.models import EmploymentType, Office, Person, PersonStatus, Team

DEMO_PASSWORD = "glasshouse-demo"  # noqa: S105 - the published demo password, nowhere else
DOMAIN = "northwind.example"
COMPANY = "Northwind Analytics"

OFFICES = {
    "London": ("London", "United Kingdom", "Europe/London"),
    "New York": ("New York", "United States", "America/New_York"),
    "Singapore": ("Singapore", "Singapore", "Asia/Singapore"),
}
REMOTE_ZONES = (
    "Europe/Berlin",
    "Europe/Lisbon",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Toronto",
)
# Names read better as text than as a 90-line list literal.
FIRST = """Amara Ben Chen Daria Elif Farid Greta Hana Ivan Jonas Kemi Liam Maya Nikhil Olga Pablo Quinn Rosa Sami
Tara Umar Vera Wen Xavier Yara Zoe Aisha Bruno Clara Dev Emil Fatima Gabriel Helena Ines Jamal Kai Lena Marco Nadia
Omar Priya Rafael Sofia Tomas Uma Victor Yusuf Zara Anya Felix""".split()  # noqa: SIM905
LAST = """Okafor Lindqvist Nakamura Rossi Haddad Kowalski Fernandes Schmidt Osei Murphy Tanaka Novak Singh Dubois Moreau
Costa Ahmed Jensen Petrov Walsh Kim Mensah Ortiz Bauer Ibrahim Larsen Silva Nguyen Horvat Byrne Kaur Yilmaz Reyes
Andersson Popescu Hughes Rahman Keller Sato Mbeki""".split()  # noqa: SIM905


@dataclass
class Fixed:
    """A named person the demo relies on (a role login, or a lead whose name people will see)."""

    name: str
    title: str
    role: Role | None = None
    login_label: str = ""


@dataclass
class TeamPlan:
    name: str
    parent: str | None
    lead: Fixed
    member_title: str
    size: int
    # Where members sit: office names, "Remote" for remote, weighted by repetition.
    places: tuple[str, ...] = ("London", "London", "New York", "Singapore", "Remote")
    fixed: list[Fixed] = field(default_factory=list)


# The lead of a team reports to the lead of its parent team; members report to their lead.
PLAN = [
    TeamPlan(COMPANY, None, Fixed("Helena Moreau", "Chief executive officer"), "Chief of staff", 1, ("London",)),
    TeamPlan(
        "Engineering", COMPANY, Fixed("Rafael Costa", "Chief technology officer"), "Engineering programme manager", 1
    ),
    TeamPlan(
        "Platform",
        "Engineering",
        Fixed("Marco Rossi", "Platform lead", login_label="Manager"),
        "Software engineer",
        16,
        fixed=[Fixed("Lena Bauer", "Software engineer", login_label="Employee")],
    ),
    TeamPlan("Data Engineering", "Engineering", Fixed("Nikhil Rahman", "Data engineering lead"), "Data engineer", 12),
    TeamPlan("Web", "Engineering", Fixed("Clara Lindqvist", "Web lead"), "Frontend engineer", 15),
    TeamPlan("Mobile", "Engineering", Fixed("Kai Tanaka", "Mobile lead"), "Mobile engineer", 10),
    TeamPlan("Quality", "Engineering", Fixed("Olga Petrov", "Quality lead"), "Test engineer", 8),
    TeamPlan("Product", COMPANY, Fixed("Sofia Fernandes", "Chief product officer"), "Product manager", 10),
    TeamPlan("Design", "Product", Fixed("Felix Keller", "Head of design"), "Product designer", 9),
    TeamPlan("Sales", COMPANY, Fixed("Jamal Osei", "VP sales"), "Sales operations analyst", 2, ("New York",)),
    TeamPlan(
        "Sales EMEA",
        "Sales",
        Fixed("Greta Jensen", "EMEA sales director"),
        "Account executive",
        12,
        ("London", "London", "London", "Remote"),
    ),
    TeamPlan(
        "Sales Americas",
        "Sales",
        Fixed("Victor Reyes", "Americas sales director"),
        "Account executive",
        14,
        ("New York", "New York", "New York", "Remote"),
    ),
    TeamPlan(
        "Sales APAC",
        "Sales",
        Fixed("Wen Nguyen", "APAC sales director"),
        "Account executive",
        10,
        ("Singapore", "Singapore", "Remote"),
    ),
    TeamPlan("Marketing", COMPANY, Fixed("Zara Hughes", "Chief marketing officer"), "Marketing manager", 12),
    TeamPlan("Customer Success", COMPANY, Fixed("Bruno Silva", "VP customer success"), "Customer success manager", 20),
    TeamPlan(
        "Finance",
        COMPANY,
        Fixed("Daria Novak", "Chief financial officer"),
        "Financial analyst",
        8,
        ("London", "New York"),
        fixed=[Fixed("Tomas Horvat", "Internal auditor", Role.AUDITOR, "Auditor")],
    ),
    TeamPlan("Legal", COMPANY, Fixed("Ines Dubois", "General counsel"), "Legal counsel", 3, ("London", "New York")),
    TeamPlan(
        "People",
        COMPANY,
        Fixed("Amara Okafor", "Chief people officer"),
        "People operations specialist",
        7,
        fixed=[Fixed("Hana Schmidt", "HR business partner", Role.HR_PARTNER, "HR partner")],
    ),
    TeamPlan(
        "IT",
        COMPANY,
        Fixed("Omar Haddad", "Head of IT"),
        "IT support engineer",
        6,
        fixed=[Fixed("Priya Singh", "IT administrator", Role.IT_ADMIN, "IT admin")],
    ),
    TeamPlan(
        "Security",
        COMPANY,
        Fixed("Ivan Kowalski", "Chief information security officer"),
        "Security engineer",
        5,
        fixed=[Fixed("Yara Ahmed", "Security analyst", Role.SECURITY_ANALYST, "Security analyst")],
    ),
]

HOURS = ((dt.time(9, 0), dt.time(17, 0)),) * 6 + ((dt.time(8, 0), dt.time(16, 0)), (dt.time(10, 0), dt.time(18, 0)))
FULL_WEEK = "mon,tue,wed,thu,fri"


@dataclass
class Seeded:
    fields: dict[str, Any]
    team: str
    place: str
    manager_number: str | None
    fixed: Fixed | None


def plan_people() -> list[Seeded]:
    """Everyone, in a fixed order with fixed random choices, so each run plans the same people."""
    rng = random.Random(42)
    used = {f.name for t in PLAN for f in [t.lead, *t.fixed]}
    lead_number: dict[str, str] = {}
    people: list[Seeded] = []

    def add(name: str, title: str, team: TeamPlan, place: str, manager: str | None, fixed: Fixed | None) -> str:
        number = f"NW{len(people) + 1:04d}"
        first, last = name.split(" ", 1)
        start, end = rng.choice(HOURS)
        senior = fixed is not None and fixed is team.lead
        people.append(
            Seeded(
                fields={
                    "full_name": name,
                    "email": f"{first}.{last}@{DOMAIN}".lower().replace(" ", ""),
                    "job_title": title,
                    "work_start": start,
                    "work_end": end,
                    "work_days": FULL_WEEK,
                    "employment_type": EmploymentType.EMPLOYEE,
                    "start_date": dt.date(2015 if senior else 2017, 1, 5) + dt.timedelta(days=rng.randrange(2900)),
                    "status": PersonStatus.ACTIVE,
                },
                team=team.name,
                place=place,
                manager_number=manager,
                fixed=fixed,
            )
        )
        return number

    for team in PLAN:
        boss = lead_number.get(team.parent) if team.parent else None
        lead = add(team.lead.name, team.lead.title, team, team.places[0], boss, team.lead)
        lead_number[team.name] = lead
        for fixed in team.fixed:
            add(fixed.name, fixed.title, team, team.places[0], lead, fixed)
        for _ in range(team.size):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            while name in used:
                name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            used.add(name)
            add(name, team.member_title, team, rng.choice(team.places), lead, None)

    members = [p for p in people if p.fixed is None]
    for person in rng.sample(members, 8):
        person.fields["employment_type"] = EmploymentType.CONTRACTOR
        person.fields["job_title"] += " (contract)"
    for person in rng.sample([p for p in members if p.fields["employment_type"] == EmploymentType.EMPLOYEE], 2):
        person.fields.update(
            employment_type=EmploymentType.INTERN, job_title=f"{person.team} intern", start_date=dt.date(2025, 9, 1)
        )
    for person in rng.sample(members, 5):
        person.fields["work_days"] = "mon,tue,wed"
    for person in rng.sample(members, 2):
        person.fields["status"] = PersonStatus.ON_LEAVE
    for person in [p for p in members if p.team == "Customer Success"][:2]:
        # The overnight support shift, Sunday night to Thursday night.
        person.fields.update(work_start=dt.time(22, 0), work_end=dt.time(6, 0), work_days="sun,mon,tue,wed,thu")
    for person in people:
        person.fields["time_zone"] = OFFICES[person.place][2] if person.place in OFFICES else rng.choice(REMOTE_ZONES)
    return people


class Command(BaseCommand):
    help = f"Create (or bring back) the {COMPANY} demo organisation with a login for every person."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--logins", action="store_true", help="only print the demo logins (make demo prints them last)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["logins"]:
            self.print_logins(demo_logins())
            return
        if not settings.DEBUG:
            raise CommandError(
                f"seed_demo creates ~200 accounts with the published password '{DEMO_PASSWORD}', so it runs only "
                "with DEBUG on (the development settings). Never seed a production installation."
            )
        with transaction.atomic():
            counts, logins = self.seed()
        self.stdout.write(
            self.style.SUCCESS(
                f"{COMPANY}: {counts['people']} people, {counts['teams']} teams, {counts['offices']} offices "
                f"({counts['created']} people added this run)."
            )
        )
        self.print_logins(logins)

    def print_logins(self, logins: list[tuple[str, str]]) -> None:
        if not logins:
            raise CommandError("There is no demo organisation yet: run `manage.py seed_demo` first.")
        width = max(len(email) for _, email in logins)
        self.stdout.write(f"\n{'role':<18} {'e-mail':<{width}}  password")
        for label, email in logins:
            self.stdout.write(f"{label:<18} {email:<{width}}  {DEMO_PASSWORD}")

    def seed(self) -> tuple[dict[str, int], list[tuple[str, str]]]:
        offices = {
            name: Office.objects.update_or_create(
                name=name, defaults={"city": city, "country": country, "time_zone": zone}
            )[0]
            for name, (city, country, zone) in OFFICES.items()
        }
        teams: dict[str, Team] = {}
        for plan in PLAN:
            parent = teams[plan.parent] if plan.parent else None
            teams[plan.name] = Team.objects.update_or_create(name=plan.name, defaults={"parent": parent})[0]

        planned = plan_people()
        existing = set(
            Person.objects.filter(employee_number__startswith="NW").values_list("employee_number", flat=True)
        )
        people: dict[str, Person] = {}
        for number, seeded in ((f"NW{i + 1:04d}", s) for i, s in enumerate(planned)):
            people[number] = Person.objects.update_or_create(
                employee_number=number,
                defaults={**seeded.fields, "team": teams[seeded.team], "office": offices.get(seeded.place)},
            )[0]
        for number, seeded in ((f"NW{i + 1:04d}", s) for i, s in enumerate(planned)):
            person = people[number]
            manager = people[seeded.manager_number] if seeded.manager_number else None
            if person.manager_id != (manager.pk if manager else None):
                person.manager = manager
                person.save(update_fields=["manager"])

        # One hash for every demo login: hashing ~200 times with Argon2 would take most of a minute.
        password = make_password(DEMO_PASSWORD)
        for person in people.values():
            user = person.user or User.objects.filter(email=person.email).first()
            if user is None:
                user = User.objects.create_user(person.email, None, display_name=person.full_name)
                user.password = password
                user.save(update_fields=["password"])
            if person.user_id != user.pk:
                person.user = user
                person.save(update_fields=["user"])

        logins: list[tuple[str, str]] = []
        by_name = {p.full_name: p for p in people.values()}
        for fixed in login_people():
            person = by_name[fixed.name]
            assert person.user is not None
            if fixed.role is not None:
                RoleAssignment.objects.get_or_create(user=person.user, role=fixed.role)
            logins.append((fixed.login_label, person.email))

        counts = {
            "people": len(people),
            "teams": len(teams),
            "offices": len(offices),
            "created": len(set(people) - existing),
        }
        record(
            actor=None, actor_label="manage.py seed_demo", action="org.demo.seed", target_label=COMPANY, after=counts
        )
        return counts, logins


def login_people() -> list[Fixed]:
    """The people whose logins the demo prints, one per role, in menu order."""
    return sorted((f for t in PLAN for f in [t.lead, *t.fixed] if f.login_label), key=_login_order)


def demo_logins() -> list[tuple[str, str]]:
    emails = dict(Person.objects.values_list("full_name", "email"))
    return [(f.login_label, emails[f.name]) for f in login_people() if f.name in emails]


def _login_order(fixed: Fixed) -> int:
    order = ["IT admin", "Security analyst", "HR partner", "Manager", "Employee", "Auditor"]
    return order.index(fixed.login_label)
