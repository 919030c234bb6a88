from django.apps import AppConfig


class OrgConfig(AppConfig):
    name = "glasshouse.org"
    label = "org"
