from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "glasshouse.devices"
    label = "devices"
