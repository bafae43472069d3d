from django.contrib import admin

from stores.models import Store


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["store_id", "name", "area_code"]
    list_filter = ["area_code"]
    search_fields = ["store_id", "name"]
