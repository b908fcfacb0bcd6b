"""Database fixtures: every store test runs on a SQLite file and on PostgreSQL.

PostgreSQL is required, not optional: CI runs it, so an unreachable server fails the tests
instead of skipping them. Set HALLFLOW_TEST_PG_URL to use another server.
"""

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlmodel import SQLModel

from activities.db import create_tables, make_engine
from activities.store import Store
from contract.records import Notice

PG_URL = os.environ.get("HALLFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class RecordingChannel:
    """A channel that keeps what it was asked to send; `fail_next` makes the next send raise."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[Notice] = []
        self.fail_next = 0

    def send(self, notice: Notice) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("channel unavailable")
        self.sent.append(notice)


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for this test session, dropped at the end."""
    schema = f"hallflow_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as error:  # noqa: BLE001 - any failure to reach the server is fatal here
        admin.dispose()
        pytest.fail(f"PostgreSQL at {PG_URL} is required for the store tests: {error}")
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """An engine with hallflow's tables, empty: a SQLite file in tmp_path, or the session's PG schema."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'hallflow.db'}")
    else:
        schema = request.getfixturevalue("pg_schema")
        engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    create_tables(engine)
    try:
        yield engine
    finally:
        if request.param == "postgresql":
            tables = ", ".join(table.name for table in SQLModel.metadata.sorted_tables)
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
        engine.dispose()


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def store(db_engine: Engine, channel: RecordingChannel) -> Store:
    return Store(db_engine, channel)
