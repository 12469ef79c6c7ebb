"""Stored evaluation runs: what was measured, on what, how, and the numbers."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from evaluation.steps import Step
from search.ops.jobs import JobStatus


class RunStatus(models.TextChoices):
    """A run's status: the job statuses of search.ops.jobs (same values), and cancelled."""

    QUEUED = JobStatus.QUEUED.value, _("waiting to start")
    RUNNING = JobStatus.RUNNING.value, _("running")
    DONE = JobStatus.DONE.value, _("finished")
    FAILED = JobStatus.FAILED.value, _("failed")
    CANCELLED = "cancelled", _("cancelled")


class EvaluationRun(models.Model):
    class Mode(models.TextChoices):
        IMAGE = "image", _("image → image")
        TEXT = "text", _("text → image")
        ZEROSHOT = "zeroshot", _("zero-shot classification")
        RAG = "rag", _("RAG label inclusion")
        ALL = "all", pgettext_lazy("evaluation modes", "all")

    # queued -> running -> done | failed (search.ops.jobs); queued or running -> cancelled
    Status = RunStatus
    FINISHED = (Status.DONE, Status.FAILED, Status.CANCELLED)

    mode = models.CharField(max_length=16, choices=Mode.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    configuration = models.JSONField(
        default=dict, blank=True, help_text="split, sample, seed, ks, RAG contexts, prompt..."
    )
    language = models.CharField(
        max_length=8,
        default="en",
        help_text="Language of the text queries and descriptions (search/languages.py).",
    )
    index_name = models.CharField(max_length=100)
    index_manifest = models.JSONField(default=dict, blank=True)
    model_ids = models.JSONField(default=dict, blank=True, help_text="role -> model id")
    sample_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Query images actually evaluated."
    )
    seed = models.IntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True, help_text="mode -> metric -> value")
    per_class = models.JSONField(default=dict, blank=True, help_text="mode -> list of classes")
    details = models.JSONField(
        default=dict, blank=True, help_text="RAG descriptions per sampled image."
    )
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty: started by the evaluate command.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(
        default=dict, blank=True, help_text="While running: step, done, total."
    )
    updated_at = models.DateTimeField(
        auto_now=True, help_text="Last sign of life; a stalled run is failed after a while."
    )
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Set: its worker stops at its next progress heartbeat."
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    timings = models.JSONField(
        default=dict,
        blank=True,
        help_text="Seconds per item this run measured (query image, text query, generation): "
        "what the form's estimate is based on.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.mode} on {self.index_name} [{self.status}]"

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def cancelling(self) -> bool:
        """Asked to stop, and its worker has not stopped yet."""
        return self.cancel_requested_at is not None and not self.finished

    @property
    def progress_percent(self) -> int | None:
        done, total = self.progress.get("done"), self.progress.get("total")
        return round(100 * done / total) if done is not None and total else None

    @property
    def progress_step(self) -> str:
        """The current step in words ("Embedding the query images"), for the run page."""
        step = self.progress.get("step") or ""
        return Step(step).label if step in Step.values else step

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
