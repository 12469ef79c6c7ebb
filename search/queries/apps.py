from django.apps import AppConfig


class QueriesConfig(AppConfig):
    name = "search.queries"
    label = "queries"
    verbose_name = "Search history"

    def ready(self) -> None:
        from search.queries import signals  # noqa: F401 -- connects the receivers
