from django.contrib import admin

from evaluation.models import EvaluationRun


@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = ["id", "mode", "index_name", "sample_size", "seed", "status", "created_at"]
    list_filter = ["mode", "status", "index_name"]
    readonly_fields = ["created_at", "started_at", "finished_at", "created_by"]
    search_fields = ["index_name", "error"]
