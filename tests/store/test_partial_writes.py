"""A write that fails between two rows leaves nothing behind, on both databases.

The fault is real: a trigger in the database refuses one marked row in the
middle of a batch, after the rows before it have been sent. The tests read
the tables themselves afterwards, not the answer's status.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.builders import runtime_of

# The row the trigger refuses: a user no other row uses.
FAULTY_USER = 424_242

SQLITE_TRIGGER = f"""
CREATE TRIGGER refuse_one_row BEFORE INSERT ON interactions
WHEN NEW.user_id = {FAULTY_USER}
BEGIN SELECT RAISE(ABORT, 'fault injected between rows'); END
"""

POSTGRES_TRIGGER = [
    f"""
    CREATE FUNCTION refuse_one_row() RETURNS trigger AS $$
    BEGIN
        IF NEW.user_id = {FAULTY_USER} THEN
            RAISE EXCEPTION 'fault injected between rows';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER refuse_one_row BEFORE INSERT ON interactions
    FOR EACH ROW EXECUTE FUNCTION refuse_one_row()
    """,
]


def inject_fault_between_rows(engine: sa.Engine) -> None:
    """Make the database refuse the insert of FAULTY_USER's interaction."""
    statements = [SQLITE_TRIGGER] if engine.dialect.name == "sqlite" else POSTGRES_TRIGGER
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def table_rows(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Return every row of the tables a batch writes to, in a stable order."""
    with engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table}")]
            for table in ("interactions", "users")
        }


def batch_with_a_fault_in_the_middle(size: int = 50) -> list[dict]:
    """Return ``size`` new users' events with the refused one at the middle."""
    events = [
        {"user_id": 90_000 + i, "product_id": 1 + i % 5, "purchased": i % 2} for i in range(size)
    ]
    events[size // 2] = {"user_id": FAULTY_USER, "product_id": 2, "purchased": 1}
    return events


def test_a_posted_batch_whose_write_fails_part_way_writes_no_row(any_app_factory):
    app = any_app_factory()
    engine = runtime_of(app).store.engine
    inject_fault_between_rows(engine)
    before = table_rows(engine)
    response = app.test_client().post("/interactions", json=batch_with_a_fault_in_the_middle())
    assert response.status_code != 201 and "error" in response.get_json()
    assert table_rows(engine) == before


def test_a_clean_batch_after_the_fault_is_written_whole(any_app_factory):
    app = any_app_factory()
    engine = runtime_of(app).store.engine
    inject_fault_between_rows(engine)
    before = table_rows(engine)
    batch = [e for e in batch_with_a_fault_in_the_middle() if e["user_id"] != FAULTY_USER]
    response = app.test_client().post("/interactions", json=batch)
    assert response.status_code == 201
    assert len(table_rows(engine)["interactions"]) == len(before["interactions"]) + len(batch)


def test_an_imported_file_whose_write_fails_part_way_writes_no_row(catalog_store, tmp_path):
    inject_fault_between_rows(catalog_store.engine)
    before = table_rows(catalog_store.engine)
    lines = ["user_id,product_clicked,purchased"]
    lines += [
        f"{e['user_id']},{e['product_id']},{e['purchased']}"
        for e in batch_with_a_fault_in_the_middle()
    ]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(sa.exc.SQLAlchemyError, match="fault injected between rows"):
        catalog_store.import_interactions(path)
    assert table_rows(catalog_store.engine) == before
