"""A tenant context that raw SQL cannot forge, and organizations behind row-level security.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Until now the policies trusted ``leaddb.tenant`` and ``leaddb.platform``, settings that any SQL
of the session can change with ``set_config``. Now a unit of work sends
``<org_id>.<HMAC-SHA256(key, 't:' || org_id)>`` (and ``<HMAC(key, 'p:platform')>`` for the
platform), and the policies compare against ``leaddb_tenant()`` / ``leaddb_platform()``: they
verify the MAC with PostgreSQL's own ``sha256()`` (core since PostgreSQL 11: no extension, so
the embedded server works too) against a key kept in the schema ``leaddb_private``, which the
role ``leaddb_app`` cannot read. A forged, unsigned or copied-to-another-tenant value means no
rows. The functions are ``STABLE`` and called as ``(SELECT f())``: once per statement.

The HMAC's padded keys are stored beside the key, so a check is two ``sha256()`` calls over a
few dozen bytes (computing the pads in the function cost ~100 µs per call), and they are read
once per session, not per statement (``leaddb_private.pads()``).

``organizations`` gets row-level security too: a tenant unit of work sees its own organization
only, and only the platform may insert, update or delete one.

``leaddb_private.pending_invalidations`` is a durable list of what Redis must still be told:
sessions to end (written by triggers, so a user or organization deactivated or deleted by any
statement at all, raw SQL included, is listed in the same transaction) and tenants whose cache
epoch must change (written by a process whose invalidation found Redis unreachable). Every
leaddb process applies the list when Redis answers again, and polls it. The application role
reaches it only through functions: adding for its own tenant, reading and clearing as the
platform.

``leaddb_private`` also holds the key that signs pagination cursors (random, made here), which
the application role may read: it guards cursors against API clients, not against SQL.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "leaddb_app"
PRIVATE = "leaddb_private"

TENANT_TABLES = (
    "users",
    "leads",
    "workflows",
    "workflow_executions",
    "activity_logs",
    "lead_scoring_rules",
    "lead_score_history",
    "communications",
    "campaigns",
    "campaign_leads",
    "integrations",
    "lead_assignments",
    "lead_notes",
)

TENANT = "(SELECT leaddb_tenant())"
PLATFORM = "(SELECT leaddb_platform())"

# HMAC-SHA256 of ``message`` (an SQL text expression) with the stored pads, in hex.
MAC = (
    "pg_catalog.encode(pg_catalog.sha256((leaddb_private.pads())[2] OPERATOR(pg_catalog.||) "
    "pg_catalog.sha256((leaddb_private.pads())[1] OPERATOR(pg_catalog.||) "
    "pg_catalog.convert_to({message}, 'UTF8'))), 'hex')"
)

# 256 random bits from the server's strong random source (gen_random_uuid is core since 13).
RANDOM_KEY = (
    "sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text "
    "|| gen_random_uuid()::text, 'UTF8'))"
)


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA {PRIVATE}")
    op.execute(f"REVOKE ALL ON SCHEMA {PRIVATE} FROM PUBLIC")
    op.execute(
        f"CREATE TABLE {PRIVATE}.context_key ("
        "singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), "
        "key bytea NOT NULL CHECK (length(key) BETWEEN 16 AND 64), "
        "ipad bytea NOT NULL, opad bytea NOT NULL)"
    )
    op.execute(
        f"CREATE TABLE {PRIVATE}.cursor_key ("
        "singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), key bytea NOT NULL)"
    )
    # The owner's own: installs a key and its HMAC pads (RFC 2104, a key of at most 64 bytes).
    op.execute(
        f"CREATE FUNCTION {PRIVATE}.set_context_key(new_key bytea) RETURNS void "
        "LANGUAGE plpgsql AS $$ DECLARE padded bytea; ipad bytea; opad bytea; BEGIN "
        "padded := new_key || decode(repeat('00', 64 - length(new_key)), 'hex'); "
        "ipad := padded; opad := padded; "
        "FOR i IN 0..63 LOOP "
        "ipad := set_byte(ipad, i, get_byte(padded, i) # 54); "
        "opad := set_byte(opad, i, get_byte(padded, i) # 92); END LOOP; "
        f"INSERT INTO {PRIVATE}.context_key (key, ipad, opad) VALUES (new_key, ipad, opad) "
        "ON CONFLICT (singleton) DO UPDATE SET key = EXCLUDED.key, ipad = EXCLUDED.ipad, "
        "opad = EXCLUDED.opad; END $$"
    )
    op.execute(f"REVOKE ALL ON FUNCTION {PRIVATE}.set_context_key(bytea) FROM PUBLIC")
    op.execute(f"SELECT {PRIVATE}.set_context_key({RANDOM_KEY})")
    op.execute(f"INSERT INTO {PRIVATE}.cursor_key (key) VALUES ({RANDOM_KEY})")
    op.execute(f"GRANT USAGE ON SCHEMA {PRIVATE} TO {ROLE}")
    op.execute(f"GRANT SELECT ON {PRIVATE}.cursor_key TO {ROLE}")

    # The HMAC's padded keys, read from the table once per session and plan: declared
    # IMMUTABLE so that the planner folds the call into a constant of the functions' cached
    # plans. Reading the table in every statement cost 30-80 µs a unit of work (its first
    # access in each transaction); the folded constant costs nothing. The owner's own: the
    # application role cannot call it, and cannot see into another function's plan. A new key
    # reaches a session when its plans are made again: new connections (LeadDB.migrate expires
    # the pool's), or DISCARD PLANS.
    op.execute(
        f"CREATE FUNCTION {PRIVATE}.pads() RETURNS bytea[] LANGUAGE sql IMMUTABLE "
        f"AS $$ SELECT ARRAY[k.ipad, k.opad] FROM {PRIVATE}.context_key k $$"
    )
    op.execute(f"REVOKE ALL ON FUNCTION {PRIVATE}.pads() FROM PUBLIC")
    # The MAC of one message, in hex; the owner's own (the purge trigger signs with it).
    op.execute(
        f"CREATE FUNCTION {PRIVATE}.mac(message text) RETURNS text LANGUAGE plpgsql STABLE "
        f"AS $$ BEGIN RETURN {MAC.format(message='message')}; END $$"
    )
    op.execute(f"REVOKE ALL ON FUNCTION {PRIVATE}.mac(text) FROM PUBLIC")
    # SECURITY DEFINER: they use the key that the caller cannot. No SET search_path (it would
    # cost a setting change per call): every name they use is qualified, and pg_temp is never
    # searched for functions or operators. The MAC is checked before the text is cast, so no
    # value that leaddb did not sign ever reaches the cast. The MAC is computed inline, not
    # through mac(): a SQL-language call is planned again in every statement.
    tenant_mac = MAC.format(message="'t:' OPERATOR(pg_catalog.||) pg_catalog.left(context, 36)")
    op.execute(
        "CREATE FUNCTION leaddb_tenant() RETURNS uuid LANGUAGE plpgsql STABLE SECURITY DEFINER "
        "PARALLEL SAFE AS $$ DECLARE context text := "
        "pg_catalog.current_setting('leaddb.tenant', true); BEGIN "
        "IF context IS NULL OR pg_catalog.length(context) <> 101 THEN RETURN NULL; END IF; "
        f"IF {tenant_mac} OPERATOR(pg_catalog.=) pg_catalog.substr(context, 38) THEN "
        "RETURN pg_catalog.left(context, 36)::uuid; END IF; RETURN NULL; END $$"
    )
    platform_mac = MAC.format(message="'p:platform'")
    op.execute(
        "CREATE FUNCTION leaddb_platform() RETURNS boolean LANGUAGE plpgsql STABLE "
        "SECURITY DEFINER PARALLEL SAFE AS $$ DECLARE context text := "
        "pg_catalog.current_setting('leaddb.platform', true); BEGIN "
        "IF context IS NULL OR pg_catalog.length(context) <> 64 THEN RETURN false; END IF; "
        f"RETURN coalesce({platform_mac} OPERATOR(pg_catalog.=) context, false); END $$"
    )

    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING (organization_id = {TENANT}) WITH CHECK (organization_id = {TENANT})"
        )
    op.execute("DROP POLICY platform_login ON users")
    op.execute(f"CREATE POLICY platform_login ON users FOR SELECT USING ({PLATFORM})")
    op.execute("DROP POLICY platform_audit ON activity_logs")
    op.execute(f"CREATE POLICY platform_audit ON activity_logs FOR INSERT WITH CHECK ({PLATFORM})")

    op.execute("ALTER TABLE organizations ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE organizations FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY own_organization ON organizations FOR SELECT "
        f"USING (id = {TENANT} OR {PLATFORM})"
    )
    op.execute(f"CREATE POLICY platform_insert ON organizations FOR INSERT WITH CHECK ({PLATFORM})")
    op.execute(
        "CREATE POLICY platform_update ON organizations FOR UPDATE "
        f"USING ({PLATFORM}) WITH CHECK ({PLATFORM})"
    )
    op.execute(f"CREATE POLICY platform_delete ON organizations FOR DELETE USING ({PLATFORM})")

    # Which organizations a transaction deleted, for a platform unit of work whose raw SQL did
    # it: its commit must invalidate what the cache holds of them, and its own SQL cannot hide
    # a deletion from this list (the application role may only read it).
    op.execute(
        f"CREATE TABLE {PRIVATE}.deleted_organizations ("
        "transaction_id bigint NOT NULL, organization_id uuid NOT NULL)"
    )
    op.execute(f"CREATE INDEX ON {PRIVATE}.deleted_organizations (transaction_id)")
    op.execute(f"GRANT SELECT ON {PRIVATE}.deleted_organizations TO {ROLE}")
    op.execute(
        f"CREATE TABLE {PRIVATE}.pending_invalidations ("
        "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "kind text NOT NULL CHECK (kind IN ('user_sessions', 'organization_sessions', 'epoch')), "
        "organization_id uuid NOT NULL, user_id uuid, "
        "noted_at timestamptz NOT NULL DEFAULT now())"
    )
    op.execute(
        f"CREATE FUNCTION {PRIVATE}.note_deactivation() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER AS $$ BEGIN "
        "IF TG_TABLE_NAME = 'users' THEN "
        f"INSERT INTO {PRIVATE}.pending_invalidations (kind, organization_id, user_id) "
        "VALUES ('user_sessions', OLD.organization_id, OLD.id); "
        f"ELSE INSERT INTO {PRIVATE}.pending_invalidations (kind, organization_id) "
        "VALUES ('organization_sessions', OLD.id); END IF; RETURN NULL; END $$"
    )
    for table in ("users", "organizations"):
        op.execute(
            f"CREATE TRIGGER {table}_note_deactivation AFTER UPDATE OF is_active ON {table} "
            "FOR EACH ROW WHEN (OLD.is_active AND NOT NEW.is_active) "
            f"EXECUTE FUNCTION {PRIVATE}.note_deactivation()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_note_deletion AFTER DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {PRIVATE}.note_deactivation()"
        )
    # A lost cache invalidation, noted by the process that lost it: for its own tenant only
    # (or as the platform), so no tenant can have another's cache emptied at will.
    op.execute(
        "CREATE FUNCTION leaddb_note_epoch(tenant uuid) RETURNS void LANGUAGE plpgsql "
        "SECURITY DEFINER AS $$ BEGIN "
        "IF tenant IS DISTINCT FROM leaddb_tenant() AND NOT leaddb_platform() THEN "
        "RAISE insufficient_privilege USING MESSAGE = 'not this unit of work''s tenant'; END IF; "
        f"INSERT INTO {PRIVATE}.pending_invalidations (kind, organization_id) "
        "VALUES ('epoch', tenant); END $$"
    )
    op.execute(
        "CREATE FUNCTION leaddb_pending_invalidations() RETURNS TABLE "
        "(id bigint, kind text, organization_id uuid, user_id uuid) LANGUAGE plpgsql STABLE "
        "SECURITY DEFINER AS $$ BEGIN IF NOT leaddb_platform() THEN RETURN; END IF; "
        "RETURN QUERY SELECT p.id, p.kind, p.organization_id, p.user_id "
        f"FROM {PRIVATE}.pending_invalidations p ORDER BY p.id LIMIT 1000; END $$"
    )
    op.execute(
        "CREATE FUNCTION leaddb_invalidations_applied(ids bigint[]) RETURNS void "
        "LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN IF NOT leaddb_platform() THEN "
        "RAISE insufficient_privilege USING MESSAGE = 'the platform''s alone'; END IF; "
        f"DELETE FROM {PRIVATE}.pending_invalidations WHERE id = ANY(ids); END $$"
    )
    # The purge of an organization's trail works as that tenant, now with a signed context.
    # It runs as its owner (who alone may sign), still under the policies (FORCEd).
    op.execute(
        "CREATE OR REPLACE FUNCTION leaddb_purge_activity() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET leaddb.tenant = '' AS $$ BEGIN "
        "PERFORM pg_catalog.set_config('leaddb.tenant', OLD.id::text || '.' || "
        f"{PRIVATE}.mac('t:' || OLD.id::text), true); "
        "DELETE FROM public.activity_logs WHERE organization_id = OLD.id; "
        f"INSERT INTO {PRIVATE}.deleted_organizations VALUES (pg_catalog.txid_current(), OLD.id); "
        "RETURN OLD; END $$"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION leaddb_invalidations_applied(bigint[])")
    op.execute("DROP FUNCTION leaddb_pending_invalidations()")
    op.execute("DROP FUNCTION leaddb_note_epoch(uuid)")
    for table in ("users", "organizations"):
        op.execute(f"DROP TRIGGER {table}_note_deactivation ON {table}")
        op.execute(f"DROP TRIGGER {table}_note_deletion ON {table}")
    op.execute(
        "CREATE OR REPLACE FUNCTION leaddb_purge_activity() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY INVOKER SET leaddb.tenant = '' AS $$ BEGIN "
        "PERFORM set_config('leaddb.tenant', OLD.id::text, true); "
        "DELETE FROM activity_logs WHERE organization_id = OLD.id; RETURN OLD; END $$"
    )
    for policy in ("own_organization", "platform_insert", "platform_update", "platform_delete"):
        op.execute(f"DROP POLICY IF EXISTS {policy} ON organizations")
    op.execute("ALTER TABLE organizations NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE organizations DISABLE ROW LEVEL SECURITY")
    current = "NULLIF(current_setting('leaddb.tenant', true), '')::uuid"
    platform = "current_setting('leaddb.platform', true) = 'on'"
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING (organization_id = {current}) WITH CHECK (organization_id = {current})"
        )
    op.execute("DROP POLICY platform_login ON users")
    op.execute(f"CREATE POLICY platform_login ON users FOR SELECT USING ({platform})")
    op.execute("DROP POLICY platform_audit ON activity_logs")
    op.execute(f"CREATE POLICY platform_audit ON activity_logs FOR INSERT WITH CHECK ({platform})")
    op.execute("DROP FUNCTION leaddb_platform()")
    op.execute("DROP FUNCTION leaddb_tenant()")
    op.execute(f"DROP SCHEMA {PRIVATE} CASCADE")
