"""Open a CSV export as it comes: find its encoding, delimiter and which column is which."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# .xlsx (a zip archive) and the old .xls (an OLE compound file).
_WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, no header, a required column missing).

    Nothing is written when this is raised.
    """


@dataclass(frozen=True)
class Columns:
    """The columns of one kind of file: canonical name -> header aliases people use in 1C."""

    aliases: Mapping[str, Sequence[str]]
    # Each inner tuple: at least one of these columns must be present.
    required: Sequence[tuple[str, ...]]


@dataclass(frozen=True)
class Row:
    line: int  # the file's line number where the row starts, as a spreadsheet shows it
    cells: Mapping[str, str]  # canonical column -> raw text ("" when absent)
    raw: Sequence[str]  # the row as it was, for the rejects file


@dataclass
class CsvTable:
    path: Path
    encoding: str
    delimiter: str
    header: list[str]
    mapping: dict[str, int]  # canonical column -> index in the row
    ignored: list[str] = field(default_factory=list)
    approx_rows: int = 0
    _text: str = ""

    def rows(self) -> Iterator[Row]:
        reader = csv.reader(io.StringIO(self._text, newline=""), delimiter=self.delimiter)
        next(reader, None)
        line = reader.line_num + 1
        for raw in reader:
            if any(cell.strip() for cell in raw):
                cells = {
                    name: (raw[index] if index < len(raw) else "")
                    for name, index in self.mapping.items()
                }
                yield Row(line=line, cells=cells, raw=raw)
            line = reader.line_num + 1


def open_table(path: Path, columns: Columns) -> CsvTable:
    """Read the whole file, decode it and map its header; raise ImportFileError if unusable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror}") from None
    if data.startswith(_WORKBOOK_SIGNATURES):
        raise ImportFileError(
            f"{path}: this is an Excel workbook, not CSV: save it as CSV "
            "(File > Save As > CSV; in 1C: Save as > CSV) and import that file"
        )
    encoding, text = _decode(data)
    first_line = text.split("\n", 1)[0]
    if not first_line.strip():
        raise ImportFileError(f"{path}: no header row (the first line is empty)")
    delimiter = _sniff_delimiter(first_line)
    header = next(csv.reader([first_line], delimiter=delimiter))
    mapping, ignored = _map_header(path, header, columns)
    return CsvTable(
        path=path,
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        mapping=mapping,
        ignored=ignored,
        approx_rows=max(text.count("\n") - 1, 0),
        _text=text,
    )


def _decode(data: bytes) -> tuple[str, str]:
    """UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1251 (what 1C writes)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig", data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16", data.decode("utf-16")
    try:
        return "utf-8", data.decode("utf-8")
    except UnicodeDecodeError:
        return "cp1251", data.decode("cp1251", errors="replace")


def _sniff_delimiter(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def header_key(text: str) -> str:
    return " ".join(text.replace("\ufeff", "").replace("ё", "е").split()).casefold()


def _map_header(
    path: Path, header: Sequence[str], columns: Columns
) -> tuple[dict[str, int], list[str]]:
    lookup = {
        header_key(alias): name
        for name, aliases in columns.aliases.items()
        for alias in (name, *aliases)
    }
    mapping: dict[str, int] = {}
    ignored: list[str] = []
    for index, title in enumerate(header):
        name = lookup.get(header_key(title))
        if name is None:
            if title.strip():
                ignored.append(title.strip())
            continue
        if name in mapping:
            first = header[mapping[name]].strip()
            raise ImportFileError(
                f"{path}: columns {first!r} and {title.strip()!r} both mean {name!r}"
            )
        mapping[name] = index
    for alternatives in columns.required:
        if not any(name in mapping for name in alternatives):
            raise ImportFileError(f"{path}: {_missing(alternatives, columns)}")
    return mapping, ignored


def _missing(alternatives: tuple[str, ...], columns: Columns) -> str:
    if len(alternatives) == 1:
        name = alternatives[0]
        known = ", ".join(columns.aliases[name][:3])
        also = f" (or {known})" if known else ""
        return f"no column {name!r}{also} in the header"
    return "needs at least one of the columns " + ", ".join(repr(n) for n in alternatives)
