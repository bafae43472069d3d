from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html_join

from stores.models import Store
from stores.services import StoreMasterError, load_store_master


class StoreMasterUploadForm(forms.Form):
    file = forms.FileField(label="CSV file")


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["store_id", "name", "area_code"]
    list_filter = ["area_code"]
    search_fields = ["store_id", "name"]

    def get_urls(self):
        upload = path("upload/", self.admin_site.admin_view(self.upload_view), name="stores_store_upload")
        return [upload, *super().get_urls()]

    def upload_view(self, request):
        """The `load_stores` command, from the browser: same rules, same report."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = StoreMasterUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            name = form.cleaned_data["file"].name
            try:
                report = load_store_master(form.cleaned_data["file"])
            except StoreMasterError as exc:
                problems = format_html_join("", "<br>{}", ((p,) for p in exc.problems))
                self.message_user(
                    request, format_html_join("", "{}: nothing loaded.{}", [(name, problems)]), messages.ERROR
                )
            else:
                LogEntry.objects.create(
                    user=request.user,
                    content_type=ContentType.objects.get_for_model(Store),
                    object_repr=f"store master {name}"[:200],
                    action_flag=CHANGE,
                    change_message=f"Uploaded {name}: {report}",
                )
                self.message_user(request, f"{name}: {report}", messages.SUCCESS)
                return redirect("admin:stores_store_changelist")
        context = {**self.admin_site.each_context(request), "form": form, "opts": self.model._meta, "title": "Upload"}
        return TemplateResponse(request, "admin/stores/store/upload.html", context)
