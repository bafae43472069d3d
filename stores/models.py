from django.db import models


class Store(models.Model):
    """One row of the store master (`AreaCode,StoreName,StoreID`)."""

    store_id = models.CharField(max_length=64, primary_key=True)
    name = models.CharField(max_length=255)
    area_code = models.CharField(max_length=32)

    class Meta:
        ordering = ["store_id"]
        # An area's stores in id order: GET /api/visits?area= walks them so, without sorting.
        indexes = [models.Index(fields=["area_code", "store_id"], name="store_area_id")]

    def __str__(self) -> str:
        return f"{self.store_id} {self.name}"
