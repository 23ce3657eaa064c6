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
    then action, actor and the audit row's id. A row whose fields already hold those values is
    not written: no new version, no audit row. The result has one row when the key exists and
    is live (see ``_locked_update``); ``many``: one per live row, changed or not.
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
        compare=[f"${k + index}" for index in range(1, len(fields) + 1)],
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
    actor. The result has one row per live row (missing and deleted ids have none), with
    ``_written`` false for a row that already held the values (not written, not audited). Rows
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
    compare: Sequence[str] = (),
) -> str:
    """The statement of a change to locked rows. With ``compare`` (the new values of
    ``fields``), a row that holds them already is left alone.

    One row (``many``: one per live row) with the row's columns, ``_written`` (the row was
    changed), ``_unchanged`` (it was not, because it held the values already) and, unless
    ``many``, ``_current_version``: a row neither written nor unchanged failed the version
    check, and its columns are all NULL.
    """
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
    old_columns = shape.select_list("o")
    same = ""
    if compare:
        mine = ", ".join(f"t.{quote(name)}" for name in fields)
        same = f" AND ROW({mine}) IS DISTINCT FROM ROW({', '.join(compare)})"
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
        f"WHERE {join}{version_check}{same} RETURNING {shape.select_list('t')}"
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
    written_columns = ", ".join(f"w.{quote(name)}" for name in shape.columns)
    old_values = ", ".join(f"old.{quote(name)}" for name in shape.columns)
    if many:
        return (
            f"WITH {', '.join(parts)} SELECT {written_columns}, true AS _written, "
            "false AS _unchanged FROM w UNION ALL "
            f"SELECT {old_values}, false, true FROM old "
            "WHERE NOT EXISTS (SELECT 1 FROM w WHERE w.id = old.id)"
        )
    # Locked and live, a row the UPDATE skipped either held the values already or failed the
    # version check.
    version_ok = f"old.version = ${first_free}" if check_version else "true"
    nulls = ", ".join(["NULL"] * len(shape.columns))
    return (
        f"WITH {', '.join(parts)} "
        f"SELECT {written_columns}, {current} AS _current_version, true AS _written, "
        "false AS _unchanged FROM old JOIN w ON true UNION ALL "
        f"SELECT {old_values}, {current}, false, true FROM old "
        f"WHERE NOT EXISTS (SELECT 1 FROM w) AND {version_ok} UNION ALL "
        f"SELECT {nulls}, {current}, false, false FROM old "
        f"WHERE NOT EXISTS (SELECT 1 FROM w) AND NOT ({version_ok})"
    )


def upsert_one(
    shape: TableShape,
    columns: Sequence[str],
    natural_key: Sequence[tuple[str, str]],
    *,
    audit: bool,
    updated: Sequence[str] | None = None,
) -> str:
    """INSERT one row, or update the row with the same natural key (reviving a deleted one).

    ``natural_key`` pairs a column with the expression its unique index uses, ``{}`` standing
    for the column, e.g. ``[("email", "lower({})")]``. An existing row gets the ``updated``
    columns (default: all but its key, tenant and creation time), and only when one of them
    differs or the row is deleted: otherwise it is left as it is, with no new version and no
    audit row. Parameters: the columns, then (with ``audit``) the actor and the audit row's id.
    The audit row says 'created', or 'updated' with the changed fields before and after.

    The result: the row written, with ``_written`` true; or the row as it was, with
    ``_written`` false. No row at all when the row that conflicted was committed after this
    statement's snapshot was taken: running the statement again returns it.
    """
    names = ", ".join(quote(name) for name in columns)
    values = ", ".join(f"${index}" for index in range(1, len(columns) + 1))
    position = {name: index for index, name in enumerate(columns, 1)}
    target = ["organization_id"] if shape.tenant_scoped else []
    target += [template.format(quote(name)) for name, template in natural_key]
    keep = {"id", "organization_id", "created_at"}
    changing = [name for name in (columns if updated is None else updated) if name not in keep]
    updates = [f"{quote(name)} = EXCLUDED.{quote(name)}" for name in changing]
    if shape.versioned:
        updates.append("version = t.version + 1")
    if shape.has_updated_at:
        updates.append("updated_at = now()")
    if shape.soft_delete:
        updates.append("deleted_at = NULL")
    if not updates:
        updates.append("id = t.id")  # SET needs an assignment; the WHERE below skips it
    differs = []
    if changing:
        mine = ", ".join(f"t.{quote(name)}" for name in changing)
        theirs = ", ".join(f"EXCLUDED.{quote(name)}" for name in changing)
        differs.append(f"ROW({mine}) IS DISTINCT FROM ROW({theirs})")
    if shape.soft_delete:
        differs.append("t.deleted_at IS NOT NULL")
    # A conflicting row that fails the WHERE is still locked, and returns nothing.
    written = (
        f"INSERT INTO {shape.name} AS t ({names}) VALUES ({values}) "
        f"ON CONFLICT ({', '.join(target)}) DO UPDATE SET {', '.join(updates)} "
        f"WHERE {' OR '.join(differs) or 'false'} "
        f"RETURNING {shape.select_list('t')}, (t.xmax = 0) AS _inserted"
    )
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
    select = ", ".join(f"w.{quote(name)}" for name in shape.columns)
    kept = ", ".join(f"old.{quote(name)}" for name in shape.columns)
    result = (
        f"SELECT {select}, true AS _written FROM w UNION ALL "
        f"SELECT {kept}, false FROM old WHERE NOT EXISTS (SELECT 1 FROM w)"
    )
    if not audit:
        return f"WITH old AS ({old}), w AS ({written}) {result}"
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
    return f"WITH old AS ({old}), w AS ({written}), log AS ({log}) {result}"


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
