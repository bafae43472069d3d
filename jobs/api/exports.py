"""Per-image results as CSV or JSON text, produced piece by piece: the API's CSV export
(GET /api/jobs/<id>/images/?format=csv) and `manage.py job_results` share this code.

Rows are read with .iterator(chunk_size=...) (a server-side cursor on PostgreSQL) and written a few
hundred at a time, so memory stays flat whatever the job's size.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from jobs import selectors

COLUMNS = list(selectors.IMAGE_COLUMNS)
READ_CHUNK = 2000  # rows fetched from the database at a time
ROWS_PER_PIECE = 500  # rows per piece of text handed to the response or the terminal


def api_datetime(value: datetime | None) -> str | None:
    """A date-time as the API writes it (DRF's format with UTC): 2024-01-21T16:23:40Z."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def image_rows(*, job_id: int, store_id: str | None = None, status: str | None = None) -> Iterator[dict]:
    """Every image result of a job (optionally of one store, or with one status), in id order, as
    the dicts the API's image list shows."""
    rows = selectors.job_image_rows(job_id=job_id, store_id=store_id, status=status)
    for row in rows.iterator(chunk_size=READ_CHUNK):
        item = dict(zip(COLUMNS, row, strict=True))
        item["visit_time"] = api_datetime(item["visit_time"])
        item["processed_at"] = api_datetime(item["processed_at"])
        yield item


def _pieces(rows: Iterable[dict], size: int = ROWS_PER_PIECE) -> Iterator[list[dict]]:
    piece = []
    for row in rows:
        piece.append(row)
        if len(piece) == size:
            yield piece
            piece = []
    if piece:
        yield piece


def csv_text(rows: Iterable[dict]) -> Iterator[str]:
    """The header line, then the rows (empty cells for nulls), a few hundred rows per string."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    yield buffer.getvalue()
    for piece in _pieces(rows):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(piece)
        yield buffer.getvalue()


def json_text(rows: Iterable[dict]) -> Iterator[str]:
    """A JSON array of the rows, one object per line."""
    yield "["
    first = True
    for piece in _pieces(rows):
        text = ",\n".join(json.dumps(row, ensure_ascii=False) for row in piece)
        yield ("\n" if first else ",\n") + text
        first = False
    yield "\n]\n" if not first else "]\n"
