from django.contrib import admin

from jobs.models import ImageResult, Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "images_total", "images_done", "images_failed", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in Job._meta.fields]


@admin.register(ImageResult)
class ImageResultAdmin(admin.ModelAdmin):
    list_display = ["id", "job_id", "url", "status", "width", "height", "perimeter", "error"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in ImageResult._meta.fields]
    show_full_result_count = False
