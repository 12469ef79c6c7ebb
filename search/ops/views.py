"""Health endpoints for load balancers: /healthz (the process answers) and /readyz.

Anyone may ask /readyz, so it answers ready or not ready and nothing more; what each check
found (database vendor, index size and model, queue depth, error text) is for staff, signed in,
and for `manage.py doctor` on the server.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from search.ops.health import readiness


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the index and the task backend are usable; 503 otherwise."""
    checks = readiness()
    ready = all(c.ok for c in checks)
    body: dict = {"status": "ready" if ready else "not ready"}
    if request.user.is_staff:
        body["checks"] = {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}
    return JsonResponse(body, status=200 if ready else 503)
