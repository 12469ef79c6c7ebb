from django.urls import path

from evaluation import views

app_name = "evaluation"

urlpatterns = [
    path("", views.run_list, name="list"),
    path("estimate/", views.run_estimate, name="estimate"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/json/", views.run_json, name="run-json"),
    path("runs/<int:pk>/csv/", views.run_csv, name="run-csv"),
]
