"""Tables an import reads, streamed: the header, then (row number, fields) a row at a time, from CSV
(rows of the wrong width or not UTF-8 rejected on their own) or parquet."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataValidationError

if TYPE_CHECKING:
    from .importers import ImportLog


def table_rows(path: Path, log_: ImportLog) -> Iterator[list[str] | tuple[int, list[str]]]:
    """Yield the header of a CSV or parquet table, then its (row number, fields) a row at a time: memory
    stays flat however long the file is. CSV rows of the wrong width or not UTF-8 are rejected on their
    own; blank lines are skipped. Notes "rows read" once the rows are exhausted."""
    if path.suffix.lower() in (".parquet", ".pq"):
        yield from parquet_rows(path, log_)
        return
    # surrogateescape: a row that is not UTF-8 is rejected on its own, its neighbours still import
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if _not_utf8(header):
            raise DataValidationError(f"{path}: line 1 (the header) is not UTF-8: {_not_utf8(header)}; "
                                      "save the file as UTF-8")
        yield header
        n, width, bad_byte = 0, len(header), _SURROGATE.search
        for fields in reader:
            if not (fields and fields[0].strip()) and not any(f.strip() for f in fields):  # blank line
                continue
            n += 1
            if any(map(bad_byte, fields)):
                log_.reject(path.name, reader.line_num, "row", "not UTF-8",
                            f"{_not_utf8(fields)}; save the file as UTF-8")
            elif len(fields) != width:
                log_.reject(path.name, reader.line_num, "row", "malformed row",
                            f"expected {width} fields ({header}), got {len(fields)}")
            else:
                yield reader.line_num, fields
    log_.note("rows read", n)


def parquet_rows(path: Path, log_: ImportLog, batch_rows: int = 65536) -> Iterator[list[str] | tuple[int, list[str]]]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as table:
        yield [str(c) for c in table.schema_arrow.names]
        n = 0
        for batch in table.iter_batches(batch_size=batch_rows):
            columns = [["" if v is None or v != v else str(v) for v in col.to_pylist()] for col in batch.columns]
            for fields in zip(*columns, strict=True):
                n += 1
                yield n + 1, list(fields)
    log_.note("rows read", n)


_SURROGATE = re.compile(r"[\udc80-\udcff]")


def _not_utf8(fields: Sequence[str]) -> str:
    """'' if every field decoded as UTF-8, else a description of the first bad field."""
    for f in fields:
        bad = _SURROGATE.search(f)
        if bad:
            raw = f.encode("utf-8", "surrogateescape")
            return f"field {raw!r} has byte 0x{ord(bad.group()) - 0xDC00:02x}, which is not UTF-8"
    return ""
