from django.apps import AppConfig


class ActivityConfig(AppConfig):
    name = "glasshouse.activity"
    label = "activity"
