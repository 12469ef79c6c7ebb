from django.urls import path

from search import views

app_name = "search"

urlpatterns = [
    path("", views.search_page, name="home"),
    path("search/", views.run_search, name="run"),
    path("collections/", views.collections, name="collections"),
    path("history/", views.history, name="history"),
    path("history/delete/", views.delete_history, name="history-delete"),
    path("history/<int:pk>/", views.query_detail, name="query"),
    path("history/<int:pk>/rerun/", views.rerun_query, name="query-rerun"),
    path("history/<int:pk>/delete/", views.delete_query, name="query-delete"),
    path("history/<int:pk>/upload/", views.query_upload, name="query-upload"),
    path("history/<int:pk>/describe/", views.describe, name="describe"),
    path("descriptions/<int:pk>/", views.description_detail, name="description"),
    path(
        "descriptions/<int:pk>/regenerate/",
        views.regenerate_description,
        name="description-regenerate",
    ),
    path("images/<int:pk>/", views.image_file, name="image"),
    path("images/<int:pk>/thumb/", views.image_thumbnail, name="image-thumb"),
    path("images/<int:pk>/similar/", views.similar, name="similar"),
    path("accounts/profile/", views.profile, name="profile"),
]
