"""Engine, sessions and an explicit, versioned schema migration mechanism.

Why not Alembic: the schema is small, and an ordered list of plain DDL steps recorded in a
one-row version table is easy to audit. A fresh database gets the current schema and the latest
version stamp; an existing one gets every pending step, each in its own transaction, so an
upgrade never drops data and a failed step leaves the previous version intact. A database
written by a newer prefdisco is refused rather than misread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from preference_data.annotation.models import Base

VERSION_TABLE = "annotation_schema_version"

# version -> step upgrading a database at version-1 to version. Append only; never edit a step.
# Example of a future step:  3: lambda c: c.execute(text("ALTER TABLE annotation_items ADD COLUMN tags TEXT"))
def _v2_per_judgment_attributes_and_quality(conn: Connection) -> None:
    """Attribute snapshots per judgment, control items, crowd joins, adjudications, withdrawal."""
    columns = {
        "annotation_projects": ["join_token_hash VARCHAR(64)", "base_url VARCHAR(500)"],
        "annotation_items": ["kind VARCHAR(20) DEFAULT 'regular' NOT NULL", "gold JSON", "messages JSON"],
        "annotation_annotators": ["preset_keys JSON", "max_items INTEGER", "external_id VARCHAR(200)",
                                  "withdrawn_at " + ("TIMESTAMP WITH TIME ZONE"
                                                     if conn.dialect.name == "postgresql" else "TIMESTAMP")],
        "annotation_judgments": ["annotator_attributes JSON", "correct BOOLEAN"],
    }
    for table, cols in columns.items():
        for col in cols:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {col}"))
    Base.metadata.create_all(conn)  # the new adjudications table
    # Before v2 every judgment was labelled with the annotator's current attributes: freeze those.
    conn.execute(text("UPDATE annotation_judgments SET annotator_attributes = (SELECT a.attributes "
                      "FROM annotation_annotators a WHERE a.id = annotation_judgments.annotator_id)"))


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: lambda conn: Base.metadata.create_all(conn),
    2: _v2_per_judgment_attributes_and_quality,
}
SCHEMA_VERSION = max(MIGRATIONS)

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of this code."""


def default_db_url(path: str | Path = "annotation.db") -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")      # readers never block the writer
    cur.execute("PRAGMA synchronous=FULL")      # a committed judgment survives a crash
    cur.execute("PRAGMA busy_timeout=30000")    # concurrent writers wait instead of failing
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def get_engine(db_url: str) -> Engine:
    """One engine per URL per process, schema upgraded on first use."""
    with _ENGINES_LOCK:
        return _ENGINES.get(db_url) or _open(db_url)


def _open(db_url: str) -> Engine:
    if db_url.startswith("sqlite"):
        engine = create_engine(db_url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(db_url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    migrate(engine)
    _ENGINES[db_url] = engine
    return engine


def session_factory(db_url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(db_url), expire_on_commit=False)


def dispose_engine(db_url: str) -> None:
    engine = _ENGINES.pop(db_url, None)
    if engine is not None:
        engine.dispose()


def current_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    row = conn.execute(text(f"SELECT version FROM {VERSION_TABLE}")).first()
    return int(row[0]) if row else None


def _stamp(conn: Connection, version: int) -> None:
    conn.execute(text(f"DELETE FROM {VERSION_TABLE}"))
    conn.execute(text(f"INSERT INTO {VERSION_TABLE} (version) VALUES (:v)"), {"v": version})


def migrate(engine: Engine) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before upgrading (0 = new)."""
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)"))
        found = current_version(conn)
        if found is None:
            has_data_tables = inspect(conn).has_table("annotation_projects")
            found = 1 if has_data_tables else 0  # pre-versioning databases were version 1
            if found == 0:
                Base.metadata.create_all(conn)
                _stamp(conn, SCHEMA_VERSION)
                return 0
            _stamp(conn, found)
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(f"database schema v{found} is newer than this code (v{SCHEMA_VERSION}); "
                           "upgrade prefdisco")
    for version in range(found + 1, SCHEMA_VERSION + 1):
        with engine.begin() as conn:
            MIGRATIONS[version](conn)
            _stamp(conn, version)
    return found
