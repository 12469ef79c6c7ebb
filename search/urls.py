"""The product's pages, one URL namespace (`search:`) assembled from each package's routes."""

from search.catalog.urls import urlpatterns as catalog_patterns
from search.descriptions.urls import urlpatterns as description_patterns
from search.queries.urls import urlpatterns as query_patterns

app_name = "search"

urlpatterns = [*query_patterns, *description_patterns, *catalog_patterns]
