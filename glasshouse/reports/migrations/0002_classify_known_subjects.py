"""Give every application and site the rollups already hold an organisation classification
row (uncategorised), so rule changes find them; subjects met later get theirs from the
rollups' resolver."""

from django.db import migrations

APP, SITE, UNCATEGORISED = 1, 2, 0


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    Classification = apps.get_model("activity", "Classification")
    DailyUsage = apps.get_model("activity", "DailyUsage")
    known = set(Classification.objects.filter(team__isnull=True).values_list("kind", "subject_id"))
    seen = DailyUsage.objects.filter(kind__in=(APP, SITE)).values_list("kind", "subject_id").distinct()
    Classification.objects.bulk_create(
        [
            Classification(kind=kind, subject_id=subject_id, category=UNCATEGORISED)
            for kind, subject_id in seen.iterator()
            if (kind, subject_id) not in known
        ],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_initial"),
        ("activity", "0009_classification_per_team"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
