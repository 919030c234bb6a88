from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "glasshouse.audit"
    label = "audit"
