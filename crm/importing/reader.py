"""Open a CSV export as it comes: find its encoding, delimiter and which column is which,
and read its rows, each with the reason it cannot be read when that is so."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from crm.importing.decoding import Encoding, decode
from crm.importing.screen import cell_problem, suspect_lines

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
    # Why the row cannot be read at all, whatever an importer would make of it: (the column
    # at fault or None, the reason). Bytes not in the file's encoding, a quote never closed,
    # a cell with a control character or too long (crm.importing.screen).
    problem: tuple[str | None, str] | None = None


@dataclass
class CsvTable:
    path: Path
    encoding: Encoding
    delimiter: str
    header: list[str]
    mapping: dict[str, int]  # canonical column -> index in the row
    ignored: list[str] = field(default_factory=list)
    approx_rows: int = 0
    _lines: list[str] = field(default_factory=list)  # the header's first
    _first: int = 2  # the line the first row after the header starts on
    _damaged: dict[int, str] = field(default_factory=dict)  # line number -> why
    _suspect: set[int] = field(default_factory=set)  # see screen.suspect_lines

    def rows(self) -> Iterator[Row]:
        """The rows after the header, blank ones skipped.

        A quote left open runs to the end of the file: csv would read everything after it
        as one cell. Each line from the one it opens on is then a row of its own, rejected.
        """
        for start, end, raw in _records(self._lines, self._first, self.delimiter):
            if end > len(self._lines):
                yield from self._unclosed(start)
                return
            if any(cell.strip() for cell in raw):
                cells = self._cells(raw)
                problem = self._damage(start, end) if self._damaged else None
                if problem is None and (end > start or start in self._suspect):
                    problem = cell_problem(cells)
                yield Row(start, cells, raw, problem)

    def _cells(self, raw: Sequence[str]) -> dict[str, str]:
        return {name: raw[i] if i < len(raw) else "" for name, i in self.mapping.items()}

    def _damage(self, start: int, end: int) -> tuple[str | None, str] | None:
        for number in range(start, end + 1):
            if number in self._damaged:
                reason = self._damaged[number]
                return None, (reason if number == start else f"line {number}: {reason}")
        return None

    def _unclosed(self, opened: int) -> Iterator[Row]:
        """Each line from `opened` to the end, read on its own, as a rejected row."""
        last = len(self._lines)
        never_closed = "a quote opened in this row is never closed"
        if last > opened:
            never_closed += f": lines {opened}-{last} are not read"
        for number in range(opened, last + 1):
            line = self._lines[number - 1].rstrip("\r\n")
            raw: list[str] = next(csv.reader([line], delimiter=self.delimiter), [])
            if not any(cell.strip() for cell in raw):
                continue
            reason = (
                never_closed
                if number == opened
                else f"not read: the quote left open on line {opened} takes it in"
            )
            yield Row(number, self._cells(raw), raw, (None, reason))


def _records(lines: list[str], first: int, delimiter: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, cells) of each record from line `first` on, as csv reads
    them. A record that ends past the last line is a quote the file left open."""
    _lift_field_limit()
    reader = csv.reader(chain(lines[first - 1 :], [_SENTINEL]), delimiter=delimiter)
    start = first
    for raw in reader:
        if start > len(lines):  # the sentinel on its own: every quote was closed
            return
        end = first - 1 + reader.line_num
        yield start, end, raw
        start = end + 1


# Given after the last line (which ends in a line break): it closes a quote the file left
# open, or else is a record of its own, which starts past the last line.
_SENTINEL = '"\n'
# csv raises mid-file on a cell over its field_size_limit() (131 072 characters by default),
# after earlier batches have been committed. The limit is process-wide, so it is only ever
# raised, beyond any file a dealer has; a long cell is then a rejected row (see screen).
_FIELD_LIMIT = 2**31 - 1


def _lift_field_limit() -> None:
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)


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
    decoded = decode(data)
    lines = decoded.lines
    if not lines or not lines[0].strip():
        raise ImportFileError(f"{path}: no header row (the first line is empty)")
    if not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"  # for _SENTINEL
    delimiter = _sniff_delimiter(lines[0])
    # A quoted title may hold a line break ("Дата<Alt+Enter>рождения" in Excel).
    _, header_end, header = next(_records(lines, 1, delimiter))
    if header_end > len(lines):
        raise ImportFileError(f"{path}: a quote opened in the header is never closed")
    for number in range(1, header_end + 1):
        if number in decoded.damaged:
            raise ImportFileError(
                f"{path}: the header (line {number}) is {decoded.damaged[number]}"
            )
    mapping, ignored = _map_header(path, header, columns)
    return CsvTable(
        path=path,
        encoding=decoded.encoding,
        delimiter=delimiter,
        header=header,
        mapping=mapping,
        ignored=ignored,
        approx_rows=len(lines) - header_end,
        _lines=lines,
        _first=header_end + 1,
        _damaged=decoded.damaged,
        _suspect=suspect_lines(lines),
    )


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
