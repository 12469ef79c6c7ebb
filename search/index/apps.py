from django.apps import AppConfig


class IndexConfig(AppConfig):
    name = "search.index"
    label = "index"
    verbose_name = "Index"
