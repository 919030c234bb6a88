"""Alerts start from the batches that arrive after they are installed: the floor starts at the
newest batch already stored, so installing alerts on a running system does not evaluate (and
alert on) its whole history."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db.models import Max


def start_floor(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    batch = apps.get_model("activity", "IngestBatch")
    state = apps.get_model("alerts", "EvaluationState")
    newest = batch.objects.aggregate(newest=Max("id"))["newest"] or 0
    state.objects.update_or_create(pk=1, defaults={"floor": newest})


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial"), ("activity", "0008_span_url")]

    operations = [migrations.RunPython(start_floor, migrations.RunPython.noop)]
