"""The event store's tables, described once for SQLAlchemy Core and Alembic.

The schema itself is created and upgraded by Alembic migrations
(``recsys.store.migrate``); a test checks that they agree with this module.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    # Null when the log came without its catalog: the product is shown by id.
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("category", sa.String(100), nullable=True),
    sa.Column("price", sa.Float, nullable=True),
    # False: never recommended, explained or listed as similar (migration 0012).
    sa.Column("available", sa.Boolean, nullable=False, server_default=sa.true()),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("city", sa.String(200), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

interactions = sa.Table(
    "interactions",
    metadata,
    # BigInteger on PostgreSQL; SQLite only auto-increments INTEGER PRIMARY KEY.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("product_id", sa.BigInteger, sa.ForeignKey("products.id"), nullable=False),
    # True exactly for a purchase: what readers from before event types read.
    sa.Column("purchased", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # One of recsys.data.interactions.EVENT_TYPES (migration 0011: rows
    # before it became click or purchase, as their purchased said). The
    # default is for writers that name none (they wrote clicks).
    sa.Column("type", sa.String(16), nullable=False, server_default="click"),
    # A rating's stars (1-5); null for every other type.
    sa.Column("value", sa.SmallInteger, nullable=True),
    # The sender's id of the event: a batch sent again stores nothing twice.
    sa.Column("event_id", sa.String(64), nullable=True),
    # Covers the history read of every uncached answer (migrations 0006, 0011, 0014).
    sa.Index(
        "ix_interactions_user_product_history",
        "user_id",
        "product_id",
        "type",
        "value",
        "created_at",
    ),
    # A user's history, newest first, paged by (created_at, id).
    sa.Index("ix_interactions_user_created", "user_id", "created_at", "id"),
    # Unique where given (null event_ids never collide, on both databases).
    sa.Index("uq_interactions_event_id", "event_id", unique=True),
)

# The logs imported without event_ids, by the SHA-256 of their bytes: a
# second import of one is refused unless asked for (``--append``).
imported_files = sa.Table(
    "imported_files",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("imported_at", sa.DateTime, nullable=False),
)

# Records of training jobs, so every server process (and a restarted one) can
# report on a job another process ran.
training_jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("requested_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("metrics", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The last beat of the worker running the job (its lease); None before a claim.
    sa.Column("heartbeat_at", sa.DateTime, nullable=True),
    # The quality gate's record of the version the job trained (both figures).
    sa.Column("gate", sa.JSON, nullable=True),
)

# A/B tests: one row per experiment; its variants (name, weight, strategy) as JSON.
experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(32), nullable=False),
    sa.Column("baseline_rate", sa.Float, nullable=False),
    sa.Column("mde", sa.Float, nullable=False),
    sa.Column("planned_per_variant", sa.Integer, nullable=False),
    sa.Column("variants", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("stopped_at", sa.DateTime, nullable=True),
    # One experiment runs at a time: the database refuses a second, however
    # many servers start one at the same moment.
    sa.Index(
        "uq_experiments_one_running",
        "status",
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
)

# Each list served inside an experiment (written in batches, off the request path).
exposures = sa.Table(
    "exposures",
    metadata,
    sa.Column("recommendation_id", sa.String(32), primary_key=True),
    sa.Column("experiment", sa.String(64), nullable=False),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    # Product ids in the order shown, space-separated (empty when the request failed).
    sa.Column("product_ids", sa.Text, nullable=False),
    # Those of them in exploration slots, space-separated (migration 0010; null before it).
    sa.Column("explored_ids", sa.Text, nullable=True),
    sa.Column("model_version", sa.String(64), nullable=True),
    sa.Column("strategy", sa.String(32), nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("failed", sa.Boolean, nullable=False),
    sa.Column("served_at", sa.DateTime, nullable=False),
    sa.Index("ix_exposures_experiment_user", "experiment", "user_id"),
    # A user's exposures, for their deletion and export (migration 0012).
    sa.Index("ix_exposures_user", "user_id"),
    # The oldest exposures first, for the retention's prune (migration 0013).
    sa.Index("ix_exposures_served_at", "served_at"),
)

# Interactions posted with the recommendation_id of the list they came from.
exposure_events = sa.Table(
    "exposure_events",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("recommendation_id", sa.String(32), nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("product_id", sa.BigInteger, nullable=False),
    sa.Column("purchased", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_exposure_events_recommendation", "recommendation_id"),
    sa.Index("ix_exposure_events_user", "user_id"),
)

# How often each product was shown in an answer, summed over every process
# (counted in process, added in batches off the request path). No foreign key:
# a count must never wait for, or fail on, the catalog.
product_impressions = sa.Table(
    "product_impressions",
    metadata,
    sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("impressions", sa.BigInteger, nullable=False),
)

# One row per deleted user: who deleted them (an API key's name, or the
# command line), when, and how many rows of each table went; never the data.
user_deletions = sa.Table(
    "user_deletions",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", sa.DateTime, nullable=False),
    sa.Column("deleted_by", sa.String(64), nullable=False),
    # Table name -> rows deleted from it.
    sa.Column("rows", sa.JSON, nullable=False),
)
