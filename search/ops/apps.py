from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "search.ops"
    label = "ops"
    verbose_name = "Operations"
