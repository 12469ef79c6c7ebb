"""Search pages: the search form, results and history (in the `search` namespace)."""

from django.urls import path

from search.queries import history_views, views

urlpatterns = [
    path("", views.search_page, name="home"),
    path("search/", views.run_search, name="run"),
    path("history/", history_views.history, name="history"),
    path("history/delete/", history_views.delete_history, name="history-delete"),
    path("history/<int:pk>/", views.query_detail, name="query"),
    path("history/<int:pk>/rerun/", views.rerun_query, name="query-rerun"),
    path("history/<int:pk>/delete/", history_views.delete_query, name="query-delete"),
    path("history/<int:pk>/upload/", views.query_upload, name="query-upload"),
    path("images/<int:pk>/similar/", views.similar, name="similar"),
]
