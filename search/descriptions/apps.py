from django.apps import AppConfig


class DescriptionsConfig(AppConfig):
    name = "search.descriptions"
    label = "descriptions"
    verbose_name = "Descriptions"
