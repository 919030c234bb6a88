from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "glasshouse.alerts"
    label = "alerts"
    verbose_name = "Alerts"
