from django.apps import AppConfig


class ControlsConfig(AppConfig):
    name = "glasshouse.controls"
    label = "controls"
    verbose_name = "Device, web and app control"
