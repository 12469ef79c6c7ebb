"""Description pages (in the `search` namespace)."""

from django.urls import path

from search.descriptions import views

urlpatterns = [
    path("history/<int:pk>/describe/", views.describe, name="describe"),
    path("descriptions/<int:pk>/", views.description_detail, name="description"),
    path(
        "descriptions/<int:pk>/regenerate/",
        views.regenerate_description,
        name="description-regenerate",
    ),
]
