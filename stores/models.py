from django.db import models


class Store(models.Model):
    """One row of the store master (`AreaCode,StoreName,StoreID`)."""

    store_id = models.CharField(max_length=64, primary_key=True)
    name = models.CharField(max_length=255)
    area_code = models.CharField(max_length=32, db_index=True)

    class Meta:
        ordering = ["store_id"]

    def __str__(self) -> str:
        return f"{self.store_id} {self.name}"
