"""The SQL of the generic repository's changes to existing rows: update (one and many), soft
delete and restore, hard delete, upsert; built once per table and per patch shape.

Like the inserts (leaddb.sql.statements), each is one statement whose data-modifying CTE
writes the audit row with the change, and every value is a ``$n`` parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

from leaddb.sql.statements import (
    AUDIT_TABLE,
    SECRET_COLUMNS,
    TableShape,
    audit_insert,
    quote,
)


def update_one(
    shape: TableShape,
    fields: Sequence[str],
    *,
    audit: bool,
    check_version: bool,
    many: bool = False,
) -> str:
    """UPDATE one live row by key with ``fields`` (each a parameter).

    Parameters: the key (1 or 2), then each field, then the expected version (when checked),
    then action, actor and the audit row's id. The result has one row when the key exists and
    is live: the new row (all NULL when the version check failed) plus ``_current_version``.
    """
    k = shape.key_params
    assignments = [f"{quote(name)} = ${k + index}" for index, name in enumerate(fields, 1)]
    return _locked_update(
        shape,
        fields,
        assignments,
        first_free=k + len(fields) + 1,
        audit=audit,
        check_version=check_version,
        state="live",
        many=many,
    )


def soft_delete(shape: TableShape, *, deleted: bool, audit: bool, check_version: bool) -> str:
    """Set (or clear) ``deleted_at`` of one row; parameters as ``update_one`` without fields."""
    value = "now()" if deleted else "NULL"
    return _locked_update(
        shape,
        ("deleted_at",),
        [f"deleted_at = {value}"],
        first_free=shape.key_params + 1,
        audit=audit,
        check_version=check_version,
        state="live" if deleted else "deleted",
    )


def update_many(shape: TableShape, fields: Sequence[str], *, audit: bool) -> str:
    """UPDATE the live rows whose ids are in an array with ``fields``, in one statement.

    Parameters: the tenant (when tenant-scoped), the id array, each field, then action and
    actor. The result has one row per row changed (missing and deleted ids have none). Rows
    are locked in id order, so two overlapping bulk updates cannot deadlock each other.
    """
    return update_one(shape, fields, audit=audit, check_version=False, many=True)


def _locked_update(
    shape: TableShape,
    fields: Sequence[str],
    assignments: list[str],
    *,
    first_free: int,
    audit: bool,
    check_version: bool,
    state: str,
    many: bool = False,
) -> str:
    assignments = list(assignments)
    if shape.versioned:
        assignments.append("version = t.version + 1")
    if shape.has_updated_at:
        assignments.append("updated_at = now()")
    next_param = first_free
    version_check = ""
    if check_version:
        version_check = f" AND t.version = ${next_param}"
        next_param += 1
    condition = (
        {
            "live": " AND o.deleted_at IS NULL",
            "deleted": " AND o.deleted_at IS NOT NULL",
        }.get(state, "")
        if shape.soft_delete
        else ""
    )
    old_columns = ", ".join(
        ["o.organization_id"] * shape.tenant_scoped
        + ["o.id"]
        + [f"o.{quote(name)}" for name in fields]
        + (["o.version"] if shape.versioned else [])
    )
    if many:
        ids = "$2" if shape.tenant_scoped else "$1"
        tenant = "o.organization_id = $1 AND " if shape.tenant_scoped else ""
        key = f"{tenant}o.id = ANY({ids}::uuid[])"
        lock = " ORDER BY o.id FOR NO KEY UPDATE"
    else:
        key, lock = shape.key_condition("o", 1), " FOR NO KEY UPDATE"
    # The lock the UPDATE takes anyway (no key column changes), taken first so that ``old`` is
    # the version the UPDATE replaces; unlike FOR UPDATE it lets rows that reference this one
    # be inserted meanwhile.
    old = f"SELECT {old_columns} FROM {shape.name} o WHERE {key}{condition}{lock}"
    join = (
        "t.organization_id = old.organization_id AND t.id = old.id"
        if shape.tenant_scoped
        else "t.id = old.id"
    )
    written = (
        f"UPDATE {shape.name} t SET {', '.join(assignments)} FROM old "
        f"WHERE {join}{version_check} RETURNING {shape.select_list('t')}"
    )
    current = "old.version" if shape.versioned else "NULL::int"
    parts = [f"old AS ({old})", f"w AS ({written})"]
    if audit:
        visible = [name for name in fields if name not in SECRET_COLUMNS]
        before = ", ".join(f"'{name}', old.{quote(name)}" for name in visible)
        after = ", ".join(f"'{name}', w.{quote(name)}" for name in visible)
        changes = (
            f"jsonb_build_object('before', jsonb_build_object({before}), "
            f"'after', jsonb_build_object({after}))"
        )
        source = "w JOIN old ON old.id = w.id"
        audit_id = "leaddb_uuid7()" if many else f"${next_param + 2}::uuid"
        log = audit_insert(shape, source, next_param, next_param + 1, changes, id_sql=audit_id)
        parts.append(f"log AS ({log})")
    select = ", ".join(f"w.{quote(name)}" for name in shape.columns)
    if many:
        return f"WITH {', '.join(parts)} SELECT {select} FROM w"
    return (
        f"WITH {', '.join(parts)} SELECT {select}, {current} AS _current_version "
        "FROM old LEFT JOIN w ON true"
    )


def upsert_one(
    shape: TableShape,
    columns: Sequence[str],
    natural_key: Sequence[tuple[str, str]],
    *,
    audit: bool,
) -> str:
    """INSERT one row, or update the row with the same natural key (reviving a deleted one).

    ``natural_key`` pairs a column with the expression its unique index uses, ``{}`` standing
    for the column, e.g. ``[("email", "lower({})")]``. Parameters: the columns, then the actor
    and the audit row's id.
    The audit row says 'created', or 'updated' with the changed fields before and after.
    """
    names = ", ".join(quote(name) for name in columns)
    values = ", ".join(f"${index}" for index in range(1, len(columns) + 1))
    position = {name: index for index, name in enumerate(columns, 1)}
    target = ["organization_id"] if shape.tenant_scoped else []
    target += [template.format(quote(name)) for name, template in natural_key]
    keep = {"id", "organization_id", "created_at"}
    updates = [f"{quote(name)} = EXCLUDED.{quote(name)}" for name in columns if name not in keep]
    if shape.versioned:
        updates.append("version = t.version + 1")
    if shape.has_updated_at:
        updates.append("updated_at = now()")
    if shape.soft_delete:
        updates.append("deleted_at = NULL")
    written = (
        f"INSERT INTO {shape.name} AS t ({names}) VALUES ({values}) "
        f"ON CONFLICT ({', '.join(target)}) DO UPDATE SET {', '.join(updates)} "
        f"RETURNING {shape.select_list('t')}, (t.xmax = 0) AS _inserted"
    )
    select = ", ".join(f"w.{quote(name)}" for name in shape.columns)
    if not audit:
        return f"WITH w AS ({written}) SELECT {select} FROM w"
    matches = [
        f"{template.format('o.' + quote(name))} = {template.format('$' + str(position[name]))}"
        for name, template in natural_key
    ]
    if shape.tenant_scoped:
        matches.insert(0, f"o.organization_id = ${position['organization_id']}")
    # The row as the statement's snapshot saw it, before the upsert wrote it. No FOR UPDATE:
    # this CTE is read after the upsert has run, and a row changed by the same statement is
    # skipped by a locking read (the upsert takes the row lock itself).
    old = f"SELECT {shape.select_list('o')} FROM {shape.name} o WHERE {' AND '.join(matches)}"
    after = f"({shape.redacted_json('w')} - '_inserted')"
    before = shape.redacted_json("old")
    changed = (
        f"(SELECT jsonb_build_object("
        f"'before', coalesce(jsonb_object_agg(b.key, b.value), '{{}}'::jsonb), "
        f"'after', coalesce(jsonb_object_agg(b.key, {after} -> b.key), '{{}}'::jsonb)) "
        f"FROM jsonb_each({before}) b "
        "WHERE b.key NOT IN ('version', 'updated_at') "
        f"AND b.value IS DISTINCT FROM {after} -> b.key)"
    )
    changes = f"CASE WHEN w._inserted THEN jsonb_build_object('after', {after}) ELSE {changed} END"
    organization = "w.organization_id" if shape.tenant_scoped else "w.id"
    log = (
        f"INSERT INTO {quote(AUDIT_TABLE)} (organization_id, id, actor_user_id, entity_type, "
        f"entity_id, action, changes) SELECT {organization}, ${len(columns) + 2}::uuid, "
        f"${len(columns) + 1}, "
        f"'{shape.entity}', w.id, "
        f"(CASE WHEN w._inserted THEN 'created' ELSE 'updated' END)::activity_action, "
        f"{changes} FROM w LEFT JOIN old ON old.id = w.id"
    )
    return f"WITH old AS ({old}), w AS ({written}), log AS ({log}) SELECT {select} FROM w"


def delete_one(shape: TableShape, *, audit: bool, check_version: bool) -> str:
    """DELETE one row by key (hard delete), returning it. Then version?, action, actor and the
    audit row's id."""
    k = shape.key_params
    next_param = k + 1
    version_check = ""
    if check_version:
        version_check = f" AND t.version = ${next_param}"
        next_param += 1
    written = (
        f"DELETE FROM {shape.name} t WHERE {shape.key_condition('t', 1)}{version_check} "
        f"RETURNING {shape.select_list('t')}"
    )
    if not audit:
        return written
    changes = f"jsonb_build_object('before', {shape.redacted_json('w')})"
    log = audit_insert(
        shape, "w", next_param, next_param + 1, changes, id_sql=f"${next_param + 2}::uuid"
    )
    return f"WITH w AS ({written}), log AS ({log}) SELECT * FROM w"
