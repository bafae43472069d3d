from django.contrib import admin
from django.urls import path, re_path
from rest_framework.permissions import AllowAny

from jobs import api, views

urlpatterns = [
    # Clients call these with and without the trailing slash; APPEND_SLASH cannot redirect a POST.
    re_path(r"^api/submit/?$", views.SubmitJobView.as_view(), name="submit"),
    re_path(r"^api/status/?$", views.JobStatusView.as_view(), name="status"),
    re_path(r"^api/visits/?$", views.VisitsView.as_view(), name="visits"),
    path("api/jobs/<int:job_id>/", views.JobDetailView.as_view(), name="job-detail"),
    path("api/jobs/<int:job_id>/images/", views.JobImagesView.as_view(), name="job-images"),
    # The documentation stays public when API tokens are required.
    path("api/schema/", api.SchemaView.as_view(permission_classes=[AllowAny]), name="schema"),
    path("api/docs/", api.DocsView.as_view(url_name="schema", permission_classes=[AllowAny]), name="docs"),
    re_path(r"^api/", api.not_found),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/dashboard/", admin.site.admin_view(views.operations_dashboard), name="operations-dashboard"),
    path(
        "admin/dashboard/data/",
        admin.site.admin_view(views.operations_dashboard_data),
        name="operations-dashboard-data",
    ),
    path("admin/", admin.site.urls),
]

handler400 = "jobs.api.bad_request"
handler404 = "jobs.api.not_found"
handler500 = "jobs.api.server_error"
