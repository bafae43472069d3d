"""What operators and their tools read over HTTP: the front page, liveness, readiness, Prometheus
metrics and the admin's operations dashboard. Not part of the API: no JSON error envelope, not in the
schema."""

from pathlib import Path

from django.contrib import admin
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jobs.ops import dashboard, monitoring

# Browsers ask every site for /favicon.ico; read once, it is served from memory.
FAVICON = (Path(__file__).resolve().parent.parent / "static" / "jobs" / "favicon.ico").read_bytes()


@require_GET
def home(request):
    """The front page (the admin's "View site"): where the API docs, the admin and the probes are."""
    return render(request, "retailpulse/home.html")


@require_GET
def favicon(request):
    response = HttpResponse(FAVICON, content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


@require_GET
def healthz(request):
    """Liveness: the process answers. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    """Readiness: the database and the queue answer, a qcluster has a recent heartbeat, work progresses."""
    checks = monitoring.readiness()
    ready = all(check.ok for check in checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: check.detail for name, check in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)


@require_GET
def metrics(request):
    """Prometheus text format, computed from the database at scrape time."""
    return HttpResponse(generate_latest(monitoring.registry), content_type=CONTENT_TYPE_LATEST)


# The operations dashboard: staff only (urls.py wraps both in the admin's login check).
@require_GET
def operations_dashboard(request):
    context = {**admin.site.each_context(request), "title": "Operations dashboard", "data": dashboard.snapshot()}
    return render(request, "admin/operations_dashboard.html", context)


@require_GET
def operations_dashboard_data(request):
    return JsonResponse(dashboard.snapshot())
