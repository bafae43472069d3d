import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from stores.models import Store

pytestmark = pytest.mark.django_db
UPLOAD = reverse("admin:stores_store_upload")


def upload(client, text: str):
    csv_file = SimpleUploadedFile("master.csv", text.encode(), content_type="text/csv")
    return client.post(UPLOAD, {"file": csv_file}, follow=True)


def messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_store_list_links_to_the_upload(admin_client):
    assert f'href="{UPLOAD}"' in admin_client.get(reverse("admin:stores_store_changelist")).content.decode()


def test_upload_loads_the_master_and_reports_counts(admin_client):
    Store.objects.create(store_id="RP1", name="Old name", area_code="7")

    response = upload(admin_client, 'AreaCode,StoreName,StoreID\r\n7,"New, name",RP1\r\n8,Other,RP2\r\n')

    assert messages(response) == ["master.csv: 1 created, 1 updated, 0 unchanged"]
    assert Store.objects.get(store_id="RP1").name == "New, name"
    [entry] = LogEntry.objects.all()  # the admin's history: who loaded what
    assert (entry.user.username, entry.object_repr) == ("admin", "store master master.csv")
    assert entry.change_message == "Uploaded master.csv: 1 created, 1 updated, 0 unchanged"


def test_upload_of_a_bad_file_loads_nothing_and_lists_problems(admin_client):
    response = upload(admin_client, "AreaCode,StoreName,StoreID\n7,A,RP1\n7,B,\n7,C,RP1\n")

    assert messages(response) == [
        "master.csv: nothing loaded.<br>line 3: missing store id<br>line 4: duplicate store id RP1 (first on line 2)"
    ]
    assert not Store.objects.exists()


def test_store_search_and_area_filter(admin_client):
    Store.objects.bulk_create(
        [Store(store_id="RP1", name="BHARAT STORE", area_code="7"), Store(store_id="RP2", name="ASHA", area_code="8")]
    )
    changelist = reverse("admin:stores_store_changelist")

    def shown(**query):
        return [s.store_id for s in admin_client.get(changelist, query).context["cl"].result_list]

    assert shown(q="bharat") == ["RP1"]
    assert shown(q="RP2") == ["RP2"]
    assert shown(area_code="8") == ["RP2"]
