from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "search.catalog"
    label = "catalog"
    verbose_name = "Catalog"
