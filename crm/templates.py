"""The dealer's template library: built-in files, the dealer's own folder, staff's saved ones.

A name is looked up in that order of precedence: a template saved by staff in the
database, then `[templates] dir`, then the built-in Russian library. A template is checked
when it is saved (it parses, renders every channel against a sample context with every
section, and touches nothing the sandbox forbids), so a broken one never reaches clients.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.context import CompanyInfo, sample_context
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.render import MessageTemplate, Rendered, TemplateProblem, check_template
from storage.outbox import MessageTemplate as StoredTemplate

BUILT_IN = "built-in"
DATABASE = "database"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class TemplateNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no template named {name!r}: see `autoloyal template list`")


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    name: str
    origin: str
    channels: tuple[str, ...]
    needs: frozenset[str]
    problem: str | None = None


def read_source(name: str, path: Path) -> str:
    """A template file's text; a file that is not UTF-8 is a TemplateProblem, not a crash."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateProblem(
            name, f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise TemplateProblem(name, f"cannot read {path}: {exc.strerror}") from None


@cache
def _built_in_folder() -> Path:
    """The built-in templates' folder (the package is installed as files, not zipped)."""
    with resources.as_file(resources.files("templates")) as folder:
        return Path(folder)


class TemplateLibrary:
    """Finds templates by name; `folder` is the dealer's own (`[templates] dir`), if any.

    Every template it compiles is held to `limits` (the SMS parts come from `[sms]
    max_parts`), when it is saved and every time it is rendered.
    """

    def __init__(self, folder: Path | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.folder = folder
        self.limits = limits
        self._compiled: dict[tuple[str, str, str], MessageTemplate] = {}
        self._sources: dict[Path, tuple[int, str]] = {}
        self._listing: tuple[tuple[int, ...], list[tuple[str, Path]]] | None = None

    async def get(self, session: AsyncSession, name: str) -> MessageTemplate:
        """The template in force under `name`, compiled; TemplateProblem when it is broken.

        The source is looked up every time (staff may have saved a new one); compiling it
        again is skipped while it is unchanged, which matters to a job or an API request
        that sends one message at a time.
        """
        stored = await session.scalar(
            select(StoredTemplate.source).where(StoredTemplate.name == name)
        )
        if stored is not None:
            return self._compile(name, stored, DATABASE)
        for origin, source in self._files():
            if source.stem == name:
                return self._compile(name, self._read(name, source), origin)
        raise TemplateNotFound(name)

    def _read(self, name: str, path: Path) -> str:
        """A file template's text, read again only when the file changed."""
        changed = path.stat().st_mtime_ns
        known = self._sources.get(path)
        if known is None or known[0] != changed:
            known = self._sources[path] = (changed, read_source(name, path))
        return known[1]

    def _compile(self, name: str, source: str, origin: str) -> MessageTemplate:
        key = (name, origin, source)
        template = self._compiled.get(key)
        if template is None:
            template = self._compiled[key] = MessageTemplate(name, source, origin, self.limits)
        return template

    async def catalogue(self, session: AsyncSession) -> list[TemplateInfo]:
        """Every template in force, with the channels it offers; broken ones say why."""
        sources: dict[str, tuple[str, str]] = {}
        broken: dict[str, str] = {}
        for origin, path in reversed(self._files()):
            try:
                sources[path.stem] = (origin, read_source(path.stem, path))
            except TemplateProblem as problem:
                sources[path.stem] = (origin, "")
                broken[path.stem] = str(problem)
        for stored in await session.scalars(select(StoredTemplate)):
            sources[stored.name] = (DATABASE, stored.source)
        infos = []
        for name, (origin, source) in sorted(sources.items()):
            if name in broken and origin != DATABASE:
                infos.append(TemplateInfo(name, origin, (), frozenset(), broken[name]))
                continue
            try:
                template = MessageTemplate(name, source, origin, self.limits)
            except TemplateProblem as problem:
                infos.append(TemplateInfo(name, origin, (), frozenset(), str(problem)))
                continue
            infos.append(TemplateInfo(name, origin, template.channels, template.needs))
        return infos

    async def save(
        self,
        session: AsyncSession,
        name: str,
        source: str,
        *,
        company: CompanyInfo,
        today: date,
        now: datetime,
        by: str = "",
    ) -> Rendered:
        """Check and store a staff template; returns the sample rendering it passed with.

        Raises TemplateProblem (with the line) and stores nothing when the check fails.
        """
        if not _NAME.fullmatch(name):
            raise TemplateProblem(
                name, "a template name is lowercase latin letters, digits and '_'"
            )
        template = MessageTemplate(name, source, DATABASE, self.limits)
        rendered = check_template(template, sample_context(company, today))
        stored = await session.get(StoredTemplate, name)
        if stored is None:
            session.add(
                StoredTemplate(
                    name=name, source=source, updated_by=by, created_at=now, updated_at=now
                )
            )
        else:
            stored.source, stored.updated_by, stored.updated_at = source, by, now
        return rendered

    async def delete(self, session: AsyncSession, name: str) -> bool:
        """Remove a staff template; the file template of that name, if any, is in force again."""
        stored = await session.get(StoredTemplate, name)
        if stored is None:
            return False
        await session.delete(stored)
        return True

    def _files(self) -> list[tuple[str, Path]]:
        """(origin, path) of file templates, the dealer's folder first; listed again only
        when a folder changed (a file added or removed)."""
        folders = [(BUILT_IN, _built_in_folder())]
        if self.folder is not None and self.folder.is_dir():
            folders.insert(0, (str(self.folder), self.folder))
        stamp = tuple(folder.stat().st_mtime_ns for _, folder in folders)
        if self._listing is None or self._listing[0] != stamp:
            found = [
                (origin, path) for origin, folder in folders for path in sorted(folder.glob("*.j2"))
            ]
            self._listing = (stamp, found)
        return self._listing[1]
