"""The organisation defaults exist from the start (every USB class allowed, no file tracking,
no web rules, no blocked programs: nothing changes on a computer until IT decides), and the
web category list that ships with the product (data/categories.csv) is loaded, editable.

A later release that ships more domains adds a migration of its own for existing installs."""

import csv
from pathlib import Path

from django.db import migrations

CATEGORIES_CSV = Path(__file__).resolve().parent.parent / "data" / "categories.csv"

DESCRIPTIONS = {
    "productive": "Work tools: code hosting, documentation, office suites, project and meeting tools",
    "unproductive": "Games, gaming news, humour and celebrity gossip",
    "social": "Social networks, messengers and dating",
    "streaming": "Video and music streaming",
    "shopping": "Online shops and marketplaces",
    "news": "News sites",
    "webmail": "Personal web mail",
    "file-sharing": "Cloud storage, file transfer and paste sites",
}
CLASSES = ("storage", "mtp", "printer", "network", "hid", "other")


def load(apps, schema_editor):
    UsbPolicy = apps.get_model("controls", "UsbPolicy")
    UsbPolicyVersion = apps.get_model("controls", "UsbPolicyVersion")
    WebPolicy = apps.get_model("controls", "WebPolicy")
    AppPolicy = apps.get_model("controls", "AppPolicy")
    WebCategory = apps.get_model("controls", "WebCategory")
    CategoryDomain = apps.get_model("controls", "CategoryDomain")

    if not UsbPolicy.objects.filter(team__isnull=True).exists():
        snapshot = {
            "classes": dict.fromkeys(CLASSES, "allow"),
            "block_unknown_keyboards": False,
            "track_files": False,
            "allow": [],
        }
        version = UsbPolicyVersion.objects.create(team=None, scope="Organisation default", snapshot=snapshot)
        UsbPolicy.objects.create(team=None, version=version.pk)
    if not WebPolicy.objects.filter(team__isnull=True).exists():
        WebPolicy.objects.create(team=None)
    if not AppPolicy.objects.filter(team__isnull=True).exists():
        AppPolicy.objects.create(team=None)

    with CATEGORIES_CSV.open(newline="", encoding="utf-8") as f:
        rows = [(r["category"].strip(), r["domain"].strip().lower()) for r in csv.DictReader(f)]
    categories = {}
    for name in dict.fromkeys(name for name, _ in rows):
        categories[name], _ = WebCategory.objects.get_or_create(
            name=name, defaults={"description": DESCRIPTIONS.get(name, "")}
        )
    existing = set(CategoryDomain.objects.values_list("category__name", "domain"))
    CategoryDomain.objects.bulk_create(
        CategoryDomain(category=categories[name], domain=domain)
        for name, domain in dict.fromkeys(rows)
        if (name, domain) not in existing
    )


class Migration(migrations.Migration):
    dependencies = [("controls", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
