"""Undoing the conversion (`migrate accounts 0001_initial`): delete exactly the organizations and developers it
created, and rows that only exist through them. Never touches `customers`.

Refuses, deleting nothing, when a developer added after the conversion belongs to a converted organization, or when
another table protects a converted row.
"""

# Statements here are built from quoted table and column names read from the model registry.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models

from accounts.legacy.report import LegacyReverseError
from accounts.legacy.source import Legacy, uuid_text

Progress = Any


@dataclass
class ReverseResult:
    organizations_deleted: int = 0
    developers_deleted: int = 0
    related_rows: dict[str, int] = field(default_factory=dict)


def revert(connection: Any, apps: Any, *, progress: Progress | None = None) -> ReverseResult:
    legacy = Legacy.from_apps(apps, connection)
    say = progress or (lambda _msg: None)
    result = ReverseResult()
    developers = legacy.developer._default_manager.using(connection.alias)

    strangers = (
        developers.filter(organization__legacy_customer_id__isnull=False, legacy_customer_id__isnull=True)
        .order_by("organization__name", "email")
        .values_list("id", "email", "organization__name")
    )
    if strangers:
        listed = "\n".join(f"  - developer {email} ({uuid_text(dev_id)}) in {org}" for dev_id, email, org in strangers)
        raise LegacyReverseError(
            "Cannot undo the legacy conversion: these developers were added to converted organizations afterwards, "
            "and deleting the organizations would lose them. Move them to another organization or delete them "
            f"first, then roll back again. Nothing was deleted.\n{listed}"
        )

    # Other tables pointing at converted rows (usage events, dj-stripe customers, …): follow their on_delete. Plain
    # statements: the ORM's delete would first load every converted row to collect what depends on it.
    quote = connection.ops.quote_name
    legacy_rows = "legacy_customer_id IS NOT NULL"
    steps: list[tuple[str, str, str]] = []
    blockers: list[str] = []
    for model in (legacy.developer, legacy.organization):
        parent = legacy.table(model)
        for rel in _relations_to(model):
            if rel.related_model in (legacy.developer, legacy.organization):
                continue  # developers of converted organizations are converted rows themselves (checked above)
            child, column = legacy.table(rel.related_model), quote(rel.field.column)
            where = f"{column} IN (SELECT id FROM {parent} WHERE {legacy_rows})"
            label = rel.related_model._meta.label
            if rel.on_delete is models.SET_NULL:
                steps.append((label, f"UPDATE {child} SET {column} = NULL WHERE {where}", "updated"))
            elif rel.on_delete is models.CASCADE and not _relations_to(rel.related_model):
                steps.append((label, f"DELETE FROM {child} WHERE {where}", "deleted"))
            else:
                count = _execute(connection, f"SELECT count(*) FROM {child} WHERE {where}", fetch=True)
                if count:
                    blockers.append(f"  - {count} {label} row(s) point at converted {model._meta.model_name}s")
    if blockers:
        raise LegacyReverseError(
            "Cannot undo the legacy conversion: rows of other tables depend on converted organizations or "
            "developers. Remove them first, then roll back again. Nothing was deleted.\n" + "\n".join(blockers)
        )
    for label, sql, verb in steps:
        count = _execute(connection, sql)
        if count:
            result.related_rows[f"{label} {verb}"] = count

    result.developers_deleted = _execute(
        connection, f"DELETE FROM {legacy.table(legacy.developer)} WHERE {legacy_rows}"
    )
    result.organizations_deleted = _execute(
        connection, f"DELETE FROM {legacy.table(legacy.organization)} WHERE {legacy_rows}"
    )
    say(
        f"removed {result.developers_deleted} developers and {result.organizations_deleted} organizations "
        "created by the legacy conversion."
    )
    return result


def _execute(connection: Any, sql: str, *, fetch: bool = False) -> int:
    """Run `sql`: the number it selects (`fetch`), else the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0] if fetch else cursor.rowcount


def _relations_to(model: Any) -> list[Any]:
    """Foreign keys of other models to `model` (including many-to-many through tables), as the deletion collector
    finds them."""
    return [
        f
        for f in model._meta.get_fields(include_hidden=True)
        if f.auto_created and not f.concrete and (f.one_to_one or f.one_to_many)
    ]
