from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "glasshouse.core"
    label = "core"
