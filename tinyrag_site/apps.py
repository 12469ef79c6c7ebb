from django.apps import AppConfig


class SiteConfig(AppConfig):
    name = "tinyrag_site"
    verbose_name = "TinyRAG site"

    def ready(self) -> None:
        from tinyrag_site import signals  # noqa: F401 -- connects the receivers
