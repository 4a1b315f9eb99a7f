"""Read CSV, Parquet and JSON-lines files into chunks of *string* columns.

Everything is read as text first and typed later by ``sql/validate_events.sql``:
a value that does not parse then becomes a quarantined row with a reason
instead of an exception that would reject its whole file. Only a file that
cannot be read at all (missing, corrupt, no header, required columns absent)
raises ``IngestError``.

Every chunk also carries a ``_nonscalar`` column: for a row whose field holds an object or a
list (a JSON value, a Parquet struct or list, a dict in a DataFrame) it says which field, and
validation quarantines the row as ``malformed_row``; rendering ``{"x": 1}`` as the id text
``{"x": 1}`` would invent an id nobody sent. A text file may start with a UTF-8 byte-order
mark (Excel's "CSV UTF-8"); it is not part of the first column's name.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
NONSCALAR = "_nonscalar"  # the extra column of every chunk, see the module docstring
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class IngestError(ValueError):
    """A whole file was rejected; the message names the file and the problem."""


@dataclass
class Malformed:
    """A row the parser could not split into fields."""

    row_number: int
    raw: str
    detail: str


@dataclass
class RawChunk:
    """Up to ``chunk_rows`` rows of one file, every column a string."""

    table: pa.Table  # the requested columns as strings, then NONSCALAR
    first_row: int  # 1-based position of the chunk's first parsed row in its file
    malformed: list[Malformed] = field(default_factory=list)


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise IngestError(
        f"{path}: unknown file type {suffix!r}; expected one of .csv, .tsv, .parquet, .jsonl"
    )


def read_chunks(
    path: Path,
    columns: Sequence[str],
    required: Sequence[str],
    chunk_rows: int = 1_000_000,
) -> Iterator[RawChunk]:
    """Yield string chunks holding ``columns`` (absent optional ones are null).

    Column names are matched case-insensitively after trimming; unknown
    columns are ignored.
    """
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if not path.is_file():
        raise IngestError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: file is empty (not even a header)")
    fmt = detect_format(path)
    if fmt != "parquet":
        with open(path, "rb") as fh:
            if fh.read(2) in UTF16_BOMS:
                raise IngestError(f"{path}: the file is UTF-16 text (Excel's \"Unicode Text\"); "
                                  "save it as \"CSV UTF-8\" or convert it to UTF-8")
    reader = {"csv": _read_csv, "parquet": _read_parquet, "jsonl": _read_jsonl}[fmt]
    yield from reader(path, list(columns), list(required), chunk_rows)


def _select(table: pa.Table, path: Path, columns: list[str], required: list[str]) -> pa.Table:
    """Normalise names, check required ones, and return ``columns`` as strings + NONSCALAR."""
    names = {n.strip().lower(): n for n in table.column_names}
    missing = [c for c in required if c not in names]
    if missing:
        raise IngestError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(table.column_names) or 'none'}"
        )
    return text_columns(table, columns)


def text_columns(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """``columns`` of ``table`` as strings (absent ones null), then NONSCALAR.

    Names are matched case-insensitively after trimming; NONSCALAR comes from the columns of a
    nested type (struct, list, map).
    """
    names = {n.strip().lower(): n for n in table.column_names}
    out, nested = {}, {}
    for c in columns:
        if c in names:
            col = table.column(names[c])
            if pa.types.is_nested(col.type):
                nested[c] = col.to_pylist()
            out[c] = _as_string(col)
        else:
            out[c] = pa.nulls(table.num_rows, pa.string())
    out[NONSCALAR] = nonscalar_details(nested, table.num_rows)
    return pa.table(out)


def nonscalar(value: object) -> str | None:
    """``"an object"`` or ``"a list"`` for a value that is not a scalar; None for a scalar.

    >>> nonscalar({"x": 1}), nonscalar([1]), nonscalar("u1"), nonscalar(7)
    ('an object', 'a list', None, None)
    """
    if isinstance(value, str):  # the common case first: ids of every row of a frame pass here
        return None
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple | set | np.ndarray):
        return "a list"
    return None


def nonscalar_detail(row: Mapping[str, object], columns: Sequence[str]) -> str | None:
    """Why ``row`` is malformed: the first of ``columns`` holding a non-scalar; else None."""
    for c in columns:
        if kind := nonscalar(row.get(c)):
            return f"{c} is {kind}, not text or a number"
    return None


def nonscalar_details(fields: Mapping[str, Sequence[object]], n: int) -> pa.Array:
    """NONSCALAR for ``n`` rows from some fields' values (``{field: values}``, column order)."""
    out: list[str | None] = [None] * n
    for c, values in fields.items():
        for i, v in enumerate(values):
            if out[i] is None and (kind := nonscalar(v)):
                out[i] = f"{c} is {kind}, not text or a number"
    return pa.array(out, pa.string())


def _as_string(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string(col.type):
        return col
    if pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    try:
        return col.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.array([_text(v) for v in col.to_pylist()], pa.string())])


def _text(v: object) -> str | None:
    """Render one JSON/Parquet value as the text a CSV would have held."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, dt.date):  # datetime and pandas Timestamp too
        return v.isoformat()
    try:
        return json.dumps(v, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(v)


# --------------------------------------------------------------------- CSV
def _csv_header(path: Path, delimiter: str) -> list[str]:
    # utf-8-sig: a leading byte-order mark is not part of the first name (pyarrow drops it too).
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        line = fh.readline()
    header = next(csv.reader([line], delimiter=delimiter), [])
    if not header or all(not h.strip() for h in header):
        raise IngestError(f"{path}: no header row")
    return header


def _read_csv(path: Path, columns, required, chunk_rows) -> Iterator[RawChunk]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    header = _csv_header(path, delimiter)
    # Fail fast on a file whose header lacks required columns.
    _select(pa.table({h: pa.array([], pa.string()) for h in header}), path, columns, required)
    try:
        yield from _csv_stream(path, header, delimiter, columns, required, chunk_rows, pa.string())
    except pa.ArrowInvalid as exc:
        if "UTF8" not in str(exc) and "utf8" not in str(exc).lower():
            raise IngestError(f"{path}: cannot parse as CSV: {exc}") from exc
        # Invalid UTF-8 somewhere: re-read as bytes and quarantine the bad rows only.
        yield from _csv_stream(path, header, delimiter, columns, required, chunk_rows, pa.binary())


def _csv_stream(path, header, delimiter, columns, required, chunk_rows, col_type):
    malformed: list[Malformed] = []

    def on_invalid(row) -> str:
        malformed.append(
            Malformed(
                row_number=(row.number or 0),
                raw=(row.text or "")[:4096],
                detail=f"line {row.number}: expected {row.expected_columns} fields, "
                f"got {row.actual_columns}",
            )
        )
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=False, block_size=64 << 20),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_invalid, newlines_in_values=True
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={h: col_type for h in header},
            strings_can_be_null=True,
            null_values=[""],  # pyarrow's defaults would turn "nan" or "NULL" into missing
            quoted_strings_can_be_null=False,
        ),
    )
    seen = 0
    pending: pa.Table | None = None
    for batch in reader:
        table = pa.Table.from_batches([batch])
        pending = table if pending is None else pa.concat_tables([pending, table])
        while pending.num_rows >= chunk_rows:
            head, pending = pending.slice(0, chunk_rows), pending.slice(chunk_rows)
            yield RawChunk(_decode(head, path, columns, required), seen + 1, malformed[:])
            malformed.clear()
            seen += head.num_rows
    if (pending is not None and pending.num_rows) or malformed or seen == 0:
        table = pending if pending is not None else _empty(header)
        yield RawChunk(_decode(table, path, columns, required), seen + 1, malformed[:])


def _empty(header: list[str]) -> pa.Table:
    return pa.table({h: pa.array([], pa.string()) for h in header})


def _decode(table: pa.Table, path, columns, required) -> pa.Table:
    """Select columns; binary columns (bad UTF-8) decode with a visible marker."""
    if not any(pa.types.is_binary(t) for t in table.schema.types):
        return _select(table, path, columns, required)
    decoded = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_binary(col.type):
            vals = []
            for v in col.to_pylist():
                if v is None:
                    vals.append(None)
                    continue
                try:
                    vals.append(v.decode("utf-8"))
                except UnicodeDecodeError:
                    # U+FFFD cannot come from valid input bytes of an id column by
                    # accident; validation quarantines it as bad_encoding.
                    vals.append(v.decode("utf-8", errors="replace"))
            col = pa.array(vals, pa.string())
        decoded[name] = col
    return _select(pa.table(decoded), path, columns, required)


# ----------------------------------------------------------------- Parquet
def _read_parquet(path: Path, columns, required, chunk_rows) -> Iterator[RawChunk]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any reader error means "not Parquet"
        raise IngestError(f"{path}: cannot read as Parquet: {exc}") from exc
    _select(pf.schema_arrow.empty_table(), path, columns, required)
    seen = 0
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            table = pa.Table.from_batches([batch])
            yield RawChunk(_select(table, path, columns, required), seen + 1)
            seen += table.num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        raise IngestError(f"{path}: Parquet data is corrupt after row {seen}: {exc}") from exc


# ---------------------------------------------------------------- JSON-lines
def _read_jsonl(path: Path, columns, required, chunk_rows) -> Iterator[RawChunk]:
    """JSON-lines, or a JSON array of objects (a file whose first character is ``[``)."""
    rows: list[dict] = []
    malformed: list[Malformed] = []
    first = 1
    parsed = 0
    for row_no, where, obj, raw in _json_records(path):
        if isinstance(obj, Malformed):
            malformed.append(obj)
            continue
        if not isinstance(obj, dict):
            text = (raw.decode("utf-8", errors="replace").rstrip("\n") if raw is not None
                    else json.dumps(obj, ensure_ascii=False, default=str))
            detail = f"{where}: expected a JSON object, got {type(obj).__name__}"
            malformed.append(Malformed(row_no, text[:4096], detail))
            continue
        rows.append(json_row(obj, columns))
        parsed += 1
        if len(rows) >= chunk_rows:
            yield _jsonl_chunk(rows, first, malformed, columns)
            first, rows, malformed = parsed + 1, [], []
    if parsed == 0 and malformed:
        raise IngestError(f"{path}: not JSON-lines: {malformed[0].detail}")
    if rows or malformed:
        yield _jsonl_chunk(rows, first, malformed, columns)


def json_row(obj: Mapping[str, object], columns: Sequence[str]) -> dict[str, str | None]:
    """One JSON object as the text row a CSV would have held: ``columns`` then NONSCALAR.

    Keys match case-insensitively after trimming; unknown keys are ignored.

    >>> json_row({" User_ID ": 7, "item_id": {"x": 1}}, ["user_id", "item_id"])["_nonscalar"]
    'item_id is an object, not text or a number'
    """
    norm = {str(k).strip().lower(): v for k, v in obj.items()}
    return ({c: _text(norm.get(c)) for c in columns}
            | {NONSCALAR: nonscalar_detail(norm, columns)})


def _json_records(path: Path) -> Iterator[tuple[int, str, object, bytes | None]]:
    """``(number, "line n" or "element n", parsed value or Malformed, the line's bytes)``."""
    values = _json_array(path)
    if values is not None:
        for n, value in enumerate(values, start=1):
            yield n, f"element {n}", value, None
        return
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                text = raw.decode("utf-8", errors="replace").rstrip("\n")
                value = Malformed(line_no, text[:4096], f"line {line_no}: {exc}")
            yield line_no, f"line {line_no}", value, raw


def _json_array(path: Path) -> list | None:
    """The file's records if it holds one JSON array (parsed whole, in memory), else None.

    A file starting with ``[`` whose first line is not a JSON value by itself (a pretty-printed
    array) but that does not parse whole is rejected: an array has no lines to resync on.
    """
    with open(path, "rb") as fh:
        first_line = fh.readline().removeprefix(b"\xef\xbb\xbf")
    if not first_line.lstrip().startswith(b"["):
        return None
    try:
        values = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        try:
            json.loads(first_line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise IngestError(f"{path}: not a valid JSON array: {exc}") from exc
        return None  # JSON-lines whose first line is an array (malformed, like any non-object)
    return values if isinstance(values, list) else None


def _jsonl_chunk(rows, first, malformed, columns) -> RawChunk:
    names = [*columns, NONSCALAR]
    table = pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in names})
    return RawChunk(table, first, list(malformed))
