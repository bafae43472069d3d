"""Writes to the store master."""

import csv
import io
import re
from dataclasses import dataclass
from typing import IO

from django.db import transaction

from stores.models import Store

# Header names are matched after lower-casing and dropping everything but letters and digits, so
# `AreaCode`, `area_code` and `Area Code` are the same column.
COLUMNS = {"areacode": "area_code", "storename": "name", "storeid": "store_id"}


class StoreMasterError(Exception):
    """The file cannot be loaded; `problems` lists each one with its line number."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class StoreMasterNotEmpty(Exception):
    """A load meant only for an empty store master (the sample at start) found stores in it."""

    def __init__(self, stores: int):
        super().__init__(f"the store master already holds {stores} store{'' if stores == 1 else 's'}")
        self.stores = stores


@dataclass(frozen=True)
class LoadReport:
    created: int
    updated: int
    unchanged: int

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


def _normalise(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def parse_store_master(text_stream: IO[str]) -> list[Store]:
    """Read and check the whole file; raise StoreMasterError listing every bad row."""
    reader = csv.reader(text_stream)
    header = next(reader, None)
    if header is None:
        raise StoreMasterError(["line 1: the file is empty"])
    positions = {COLUMNS[_normalise(h)]: i for i, h in enumerate(header) if _normalise(h) in COLUMNS}
    missing = [name for name in COLUMNS if COLUMNS[name] not in positions]
    if missing:
        raise StoreMasterError([f"line 1: missing column(s) {', '.join(missing)} in header {header}"])

    stores: dict[str, Store] = {}
    first_seen: dict[str, int] = {}
    problems: list[str] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines, e.g. a trailing newline
        values = {field: (row[i].strip() if i < len(row) else "") for field, i in positions.items()}
        store_id = values["store_id"]
        if not store_id:
            problems.append(f"line {line}: missing store id")
        elif store_id in stores:
            problems.append(f"line {line}: duplicate store id {store_id} (first on line {first_seen[store_id]})")
        else:
            if not values["area_code"]:
                problems.append(f"line {line}: store {store_id} has no area code")
            stores[store_id] = Store(**values)
            first_seen[store_id] = line
    if problems:
        raise StoreMasterError(problems)
    return list(stores.values())


def load_store_master(binary_stream: IO[bytes], *, only_if_empty: bool = False) -> LoadReport:
    """Upsert every store of a CSV file. All or nothing: a bad row writes no row at all.

    With `only_if_empty`, raise StoreMasterNotEmpty instead of writing when the master holds any
    store: a start of the service loads its sample so, and never changes an operator's stores.
    """
    # Decode the whole file at once: a stream decodes in chunks, so the error's offset would be
    # relative to a chunk and the line unknown.
    raw = binary_stream.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise StoreMasterError([f"line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    # Drop a byte-order mark; newline="" lets csv handle CRLF and newlines in quotes.
    incoming = parse_store_master(io.StringIO(text.removeprefix("\ufeff"), newline=""))

    with transaction.atomic():
        if only_if_empty and (stores := Store.objects.count()):
            raise StoreMasterNotEmpty(stores)
        existing = Store.objects.in_bulk([s.store_id for s in incoming])
        to_create = [s for s in incoming if s.store_id not in existing]
        to_update = [
            s
            for s in incoming
            if s.store_id in existing
            and (existing[s.store_id].name, existing[s.store_id].area_code) != (s.name, s.area_code)
        ]
        Store.objects.bulk_create(to_create, batch_size=1000)
        Store.objects.bulk_update(to_update, ["name", "area_code"], batch_size=500)
    return LoadReport(
        created=len(to_create),
        updated=len(to_update),
        unchanged=len(incoming) - len(to_create) - len(to_update),
    )
