"""What an import did: counts, merges, notes, and the rejects file beside the input."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from crm.importing.reader import CsvTable, Row


class RowError(ValueError):
    """One row cannot be imported; `column` names the cell at fault when there is one."""

    def __init__(self, column: str | None, reason: str) -> None:
        super().__init__(f"{column}: {reason}" if column else reason)
        self.column = column
        self.reason = reason


@dataclass(frozen=True)
class Merge:
    line: int
    external_id: str | None
    into_client_id: int
    into_external_id: str | None
    matched_by: str  # "phone" or "email"


@dataclass
class ImportReport:
    kind: str
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    rejected: int = 0
    rejects_path: Path | None = None
    merges: list[Merge] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    new_branches: list[str] = field(default_factory=list)
    unknown_kinds: Counter[str] = field(default_factory=Counter)
    carried_over: Decimal = Decimal("0.00")  # bonuses: the sum of the opening balances written
    dry_run: bool = False

    @property
    def total(self) -> int:
        return self.imported + self.updated + self.unchanged + self.merged + self.rejected

    def summary(self) -> str:
        """`clients: 9 812 imported, 120 updated, 3 merged, 7 rejected -> clients.rejects.csv`"""
        parts = [f"{thousands(self.imported)} imported", f"{thousands(self.updated)} updated"]
        if self.unchanged:
            parts.append(f"{thousands(self.unchanged)} unchanged")
        if self.kind == "clients":
            parts.append(f"{thousands(self.merged)} merged")
        parts.append(f"{thousands(self.rejected)} rejected")
        line = f"{self.kind}: " + ", ".join(parts)
        if self.rejects_path is not None:
            line += f" -> {self.rejects_path.name}"
        if self.dry_run:
            line += " (dry run: nothing was written)"
        return line

    def notes(self) -> list[str]:
        notes = []
        if self.ignored_columns:
            notes.append("ignored columns: " + ", ".join(self.ignored_columns))
        if self.new_branches:
            notes.append("new branches for departments: " + ", ".join(self.new_branches))
        if self.unknown_kinds:
            kinds = ", ".join(f"{k!r} x{n}" for k, n in self.unknown_kinds.most_common(10))
            notes.append(f"visit kinds not recognised, stored as 'other': {kinds}")
        if self.kind == "bonuses":
            notes.append(f"bonuses carried over: {sum_text(self.carried_over)}")
        for merge in self.merges[:20]:
            into = merge.into_external_id or f"#{merge.into_client_id}"
            notes.append(
                f"line {merge.line}: client {merge.external_id or '(no id)'} merged into "
                f"{into} (same {merge.matched_by})"
            )
        if len(self.merges) > 20:
            notes.append(f"... and {len(self.merges) - 20} more merges")
        return notes


def thousands(number: float) -> str:
    """9812 -> "9 812", as Russian readers group digits; a rate like 21 892.4 is rounded."""
    return f"{round(number):,}".replace(",", " ")


def sum_text(amount: Decimal) -> str:
    """1500.5 -> "1 500.50": a sum of money or bonuses grouped the same way, to the kopeck."""
    return f"{amount:,.2f}".replace(",", " ")


class RejectsFile:
    """Rejected rows, written as the input was (same encoding, delimiter and columns) plus the
    line number and reason, so the dealer can fix them and import this file as it is."""

    def __init__(self, table: CsvTable) -> None:
        self.table = table
        self.path = table.path.with_name(f"{_stem(table.path)}.rejects.csv")
        self.count = 0
        self.path.unlink(missing_ok=True)  # a stale file from an earlier run would mislead

    def write(self, rejects: list[tuple[Row, RowError]]) -> None:
        if not rejects:
            return
        fresh = self.count == 0
        encoding = self.table.encoding
        with self.path.open("a", encoding=encoding.codec, errors="replace", newline="") as handle:
            writer = csv.writer(handle, delimiter=self.table.delimiter)
            if fresh:
                if encoding.bom:  # once, at the start of the file (the batches append)
                    handle.write("\ufeff")
                writer.writerow([*self.table.header, "reject_line", "reject_reason"])
            for row, error in rejects:
                padded = list(row.raw) + [""] * (len(self.table.header) - len(row.raw))
                writer.writerow([*padded, row.line, str(error)])
        self.count += len(rejects)


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".csv")] if name.lower().endswith(".csv") else path.stem
