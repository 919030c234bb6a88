"""On PostgreSQL, a BRIN index on span start: spans arrive roughly in time order, so a BRIN
index is tiny and cheap to maintain on the bulk-write path while still narrowing time scans.
SQLite has no BRIN; the (person, start) btree serves it."""

from django.db import migrations


def create_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX IF NOT EXISTS span_start_brin ON activity_span USING brin (start)")


def drop_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS span_start_brin")


class Migration(migrations.Migration):
    dependencies = [("activity", "0002_initial")]

    operations = [migrations.RunPython(create_brin, drop_brin)]
