"""The collection's pages and files (in the `search` namespace)."""

from django.urls import path

from search.catalog import views

urlpatterns = [
    path("collections/", views.collections, name="collections"),
    path("images/<int:pk>/", views.image_file, name="image"),
    path("images/<int:pk>/thumb/", views.image_thumbnail, name="image-thumb"),
]
