"""The organisation default agent policy exists from the start: collect apps, idle and sessions,
no window titles and no browsing until IT turns them on."""

from django.db import migrations


def create_default(apps, schema_editor):
    AgentPolicy = apps.get_model("devices", "AgentPolicy")
    if not AgentPolicy.objects.filter(team__isnull=True).exists():
        AgentPolicy.objects.create(team=None)


class Migration(migrations.Migration):
    dependencies = [("devices", "0001_initial")]

    operations = [migrations.RunPython(create_default, migrations.RunPython.noop)]
