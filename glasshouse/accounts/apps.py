from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "glasshouse.accounts"
    label = "accounts"
