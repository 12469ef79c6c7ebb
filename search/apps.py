from django.apps import AppConfig


class SearchConfig(AppConfig):
    """The product's own app: it owns no models now (catalog, queries and descriptions do), but
    keeps the migrations that created their tables, the template tags and the URL assembly."""

    name = "search"
    verbose_name = "Search"
