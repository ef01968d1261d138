"""Branches (service centres) and the department names that map to them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.names import translit
from storage.models import Branch, BranchDepartment

DEFAULT_BRANCH_CODE = "main"


class BranchSpec(Protocol):
    """A branch as the config describes it."""

    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def departments(self) -> Sequence[str]: ...
    @property
    def timezone(self) -> str | None: ...


def department_key(name: str) -> str:
    """The name case-folded, white space collapsed, cut to the key column's 128 characters
    (case-folding can lengthen a name: "ß" becomes "ss")."""
    return " ".join(name.replace("ё", "е").split()).casefold()[:128]


async def sync_branches(
    session: AsyncSession, specs: Sequence[BranchSpec], *, company_name: str, now: datetime
) -> None:
    """Make the branch table match the config: each configured branch exists with its name and
    department names, the first one is the default. With none configured, one default branch
    (`main`, named after the company) exists. Branches made by imports are kept."""
    if not specs:
        default = await session.scalar(select(Branch).where(Branch.is_default))
        if default is None:
            await _ensure_default_branch(session, company_name, now)
        return
    for index, spec in enumerate(specs):
        branch = await session.scalar(select(Branch).where(Branch.code == spec.code))
        if branch is None:
            branch = Branch(code=spec.code, name=spec.name, created_at=now)
            session.add(branch)
        branch.name = spec.name
        branch.timezone = spec.timezone
        branch.is_default = index == 0
        await session.flush()
        for department in (spec.name, spec.code, *spec.departments):
            await _map_department(session, department, branch.id, overwrite=True)
    first_code = specs[0].code
    await session.execute(
        update(Branch).where(Branch.code != first_code, Branch.is_default).values(is_default=False)
    )


async def _ensure_default_branch(session: AsyncSession, company_name: str, now: datetime) -> None:
    existing = await session.scalar(select(Branch).order_by(Branch.id).limit(1))
    if existing is not None:
        existing.is_default = True
        return
    branch = Branch(code=DEFAULT_BRANCH_CODE, name=company_name, is_default=True, created_at=now)
    session.add(branch)
    await session.flush()


async def _map_department(
    session: AsyncSession, name: str, branch_id: int, *, overwrite: bool
) -> None:
    key = department_key(name)
    if not key:
        return
    current = await session.get(BranchDepartment, key)
    if current is None:
        session.add(BranchDepartment(key=key, name=name.strip(), branch_id=branch_id))
    elif overwrite:
        current.branch_id = branch_id
    await session.flush()


class BranchResolver:
    """Maps a visit's department to its branch; an unknown department becomes a new branch."""

    def __init__(self, departments: dict[str, int], default_branch_id: int) -> None:
        self._departments = departments
        self._default = default_branch_id
        self.created: list[str] = []

    @classmethod
    async def load(cls, session: AsyncSession) -> BranchResolver:
        default_id = await session.scalar(select(Branch.id).where(Branch.is_default))
        if default_id is None:
            raise LookupError("no default branch: run `autoloyal db upgrade` first")
        rows = await session.execute(select(BranchDepartment.key, BranchDepartment.branch_id))
        return cls({key: branch_id for key, branch_id in rows}, default_id)

    def knows(self, department: str | None) -> bool:
        """The department maps to a known branch (an empty one to the default)."""
        key = department_key(department or "")
        return not key or key in self._departments

    async def resolve(self, session: AsyncSession, department: str | None, now: datetime) -> int:
        key = department_key(department or "")
        if not key:
            return self._default
        branch_id = self._departments.get(key)
        if branch_id is None:
            assert department is not None
            branch_id = await self._create(session, department.strip(), now)
            self._departments[key] = branch_id
        return branch_id

    async def _create(self, session: AsyncSession, name: str, now: datetime) -> int:
        code = await _free_code(session, _slug(name))
        branch_id = await session.scalar(
            insert(Branch)
            .values(code=code, name=name[:128], is_default=False, created_at=now)
            .returning(Branch.id)
        )
        assert branch_id is not None
        await session.execute(
            insert(BranchDepartment).values(
                key=department_key(name), name=name[:128], branch_id=branch_id
            )
        )
        self.created.append(name)
        return int(branch_id)


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", translit(name)).strip("-")
    return (slug or "branch")[:24]


async def _free_code(session: AsyncSession, base: str) -> str:
    taken = set(
        await session.scalars(
            select(Branch.code).where(Branch.code.startswith(base, autoescape=True))
        )
    )
    code, suffix = base, 2
    while code in taken:
        code, suffix = f"{base}-{suffix}", suffix + 1
    return code
