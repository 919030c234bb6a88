from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "glasshouse.ingest"
    label = "ingest"
