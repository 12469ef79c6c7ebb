"""The collection's pages and files (in the `search` namespace)."""

from django.urls import path

from search.catalog import views

urlpatterns = [
    path("collections/", views.collections, name="collections"),
    path("collections/<int:pk>/sync/", views.collection_sync, name="collection-sync"),
    path("classes/<int:pk>/", views.class_detail, name="class"),
    path("images/<int:pk>/", views.image_detail, name="image"),
    path("images/<int:pk>/file/", views.image_file, name="image-file"),
    path("images/<int:pk>/thumb/", views.image_thumbnail, name="image-thumb"),
]
