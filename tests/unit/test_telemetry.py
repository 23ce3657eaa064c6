"""leaddb.telemetry without servers: statement shapes, and staying off without a provider."""

from __future__ import annotations

import subprocess
import sys

from leaddb import telemetry


def test_a_statement_shape_keeps_placeholders_and_drops_every_literal() -> None:
    begin = telemetry._shape(
        "BEGIN; SET LOCAL leaddb.tenant = '0193a0c4-1111-7000-8000-000000000001'"
    )
    assert begin.attributes["db.query.text"] == "BEGIN; SET LOCAL leaddb.tenant = ?"
    assert begin.summary == "BEGIN"
    shape = telemetry._shape(
        "SELECT * FROM leads WHERE id = $1 AND score > 70 AND email = E'ada''s@x.org' LIMIT 5"
    )
    assert shape.attributes["db.query.text"] == (
        "SELECT * FROM leads WHERE id = $1 AND score > ? AND email = ? LIMIT ?"
    )
    assert shape.summary == "SELECT leads"


def test_a_cte_write_is_named_after_its_first_write_not_a_locking_read() -> None:
    shape = telemetry._shape(
        "WITH old AS (SELECT version FROM leads WHERE id = $1 FOR UPDATE), "
        "w AS (UPDATE leads SET score = $2 WHERE id = $1 RETURNING *), "
        "log AS (INSERT INTO activity_logs (id) SELECT id FROM w) SELECT * FROM w"
    )
    assert shape.summary == "UPDATE leads"
    assert shape.metric_attributes == {
        "db.system.name": "postgresql",
        "db.operation.name": "UPDATE",
        "db.collection.name": "leads",
    }


def test_a_read_only_cte_is_a_select() -> None:
    assert telemetry._shape("WITH x AS (SELECT 1) SELECT * FROM x").summary == "SELECT x"


def test_copy_without_text_is_named_copy() -> None:
    assert telemetry._shape(None).summary == "COPY"


def test_without_a_configured_provider_telemetry_stays_off() -> None:
    # The global providers here are OpenTelemetry's defaults: nothing would be recorded.
    assert telemetry.instrument() is False
    assert telemetry.on is False


def test_leaddb_runs_without_opentelemetry_installed() -> None:
    # The plain install has no OpenTelemetry: importing and using leaddb must not need it.
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import leaddb.db, leaddb.telemetry as t\n"
        "assert t.on is False\n"
        "try:\n    t.instrument()\nexcept ImportError:\n    print('needs the extra')\n"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "needs the extra"
