from django.contrib import admin
from django.urls import path, re_path
from rest_framework.permissions import AllowAny

from jobs.api import errors
from jobs.api import views as api_views
from jobs.ops import views as ops_views

urlpatterns = [
    path("", ops_views.home, name="home"),
    path("favicon.ico", ops_views.favicon, name="favicon"),
    # Clients call these with and without the trailing slash; APPEND_SLASH cannot redirect a POST.
    re_path(r"^api/submit/?$", api_views.SubmitJobView.as_view(), name="submit"),
    re_path(r"^api/status/?$", api_views.JobStatusView.as_view(), name="status"),
    re_path(r"^api/visits/?$", api_views.VisitsView.as_view(), name="visits"),
    path("api/jobs/<int:job_id>/", api_views.JobDetailView.as_view(), name="job-detail"),
    path("api/jobs/<int:job_id>/images/", api_views.JobImagesView.as_view(), name="job-images"),
    # The documentation stays public when API tokens are required.
    path("api/schema/", errors.SchemaView.as_view(permission_classes=[AllowAny]), name="schema"),
    path("api/docs/", errors.DocsView.as_view(url_name="schema", permission_classes=[AllowAny]), name="docs"),
    re_path(r"^api/", errors.not_found),
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("admin/dashboard/", admin.site.admin_view(ops_views.operations_dashboard), name="operations-dashboard"),
    path(
        "admin/dashboard/data/",
        admin.site.admin_view(ops_views.operations_dashboard_data),
        name="operations-dashboard-data",
    ),
    path("admin/", admin.site.urls),
]

handler400 = "jobs.api.errors.bad_request"
handler404 = "jobs.api.errors.not_found"
handler500 = "jobs.api.errors.server_error"
