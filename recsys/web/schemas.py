"""The API's shapes as pydantic models: the OpenAPI document and the new endpoints' validation.

Query models describe parameters as the service parses them: ASCII decimal
digits only for integers (``Digits`` refuses ``+5``, ``5.0``, ``1_0`` and
non-ASCII digits, which pydantic's lax mode would take), each given at most
once, never empty. Response models allow extra fields, so an answer may grow
without breaking a client that validates against this document.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel

from recsys.data.catalog import MAX_PRICE
from recsys.data.interactions import EVENT_TYPES, MAX_ID
from recsys.data.timestamps import ISO_WITH_OFFSET

MAX_PAGE = 1000
MAX_PRODUCTS_PER_PUT = 10_000
NAME_CHARS = 200  # products.name
# ASCII digits only, as recsys.web.query_params parses them.
_DIGITS = re.compile(r"[0-9]{1,40}")
CATEGORY_CHARS = 100  # products.category
# /recommend: offset + n, excluded ids, categories.
MAX_LIST_END = 1_000
MAX_EXCLUDED = 1_000
MAX_CATEGORIES = 50
# Text the API takes never holds control characters (C0, DEL, C1): PostgreSQL
# cannot store NUL, and the rest only corrupt logs, CSV exports and pages.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
# ... and a name or category also holds something besides white space.
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"


def _ascii_digits(value: Any) -> Any:
    # Strings come from the query: only plain digits are numbers here.
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("not ASCII decimal digits")
    return value


# Marks an integer query parameter: digits only, then pydantic's bounds.
Digits = BeforeValidator(_ascii_digits)


# -- errors --------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable, e.g. invalid_parameter, unknown_product")
    message: str = Field(description="what is wrong, naming the parameter and what it accepts")


class ErrorBody(BaseModel):
    """Every error answer."""

    error: ErrorDetail


# -- products in answers -------------------------------------------------------------------------


class Reason(BaseModel):
    product_id: int = Field(ge=1, le=MAX_ID)
    name: str | None
    weight: float


class ScoredProduct(BaseModel):
    product_id: int = Field(ge=1, le=MAX_ID)
    name: str | None
    category: str | None
    score: float
    because: list[Reason] | None = Field(
        None, description="with explain=true: the user's own past products behind it"
    )
    explored: Literal[True] | None = Field(
        None,
        description="present (true) when the product fills an exploration slot: new or rarely "
        "shown, chosen to collect feedback (RECSYS_EXPLORATION); its score is the slot's",
    )


class Recommendations(BaseModel):
    """A user's list (GET /recommend)."""

    user_id: int = Field(ge=1, le=MAX_ID)
    strategy: str = Field(description="svd, als, popular, ...")
    fallback_reason: Literal["unknown_user", "not_in_model"] | None = Field(
        None,
        description="unknown_user: no event of the user is recorded; not_in_model: their "
        "events are only on products the model was not trained on (with blend, which does "
        "not fold users in: the user was not in its training)",
    )
    degraded: Literal["store_unavailable"] | None = None
    model_version: str
    history_events: int = Field(
        ge=0,
        description="how many of the user's events the list was made from: the model folds "
        "in their history as it is now (0 when it could not be read)",
    )
    recommendations: list[ScoredProduct]
    experiment: str | None = Field(None, description="the A/B test running, if any")
    variant: str | None = Field(None, description="the user's variant of that test")
    recommendation_id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="send it back with the clicks and purchases on this list",
    )


class SessionRecommendations(BaseModel):
    """An anonymous session's list (POST /recommend/session)."""

    strategy: str = Field(description="svd, als, popular, ...")
    fallback_reason: Literal["not_in_model"] | None = Field(
        None, description="not_in_model: the model was trained on none of the session's products"
    )
    model_version: str
    history_events: int = Field(ge=1, description="how many session items the list was made from")
    recommendations: list[ScoredProduct]


class PopularProducts(BaseModel):
    """The most-clicked products (GET /popular)."""

    strategy: Literal["popular"]
    recommendations: list[ScoredProduct]


class SimilarProducts(BaseModel):
    """A product's neighbours (GET /similar), never the product itself."""

    product_id: int = Field(ge=1, le=MAX_ID)
    strategy: str = Field(
        description="the model that compared products, or popular for the category fallback"
    )
    fallback_reason: Literal["not_in_model", "no_item_similarity"] | None = Field(
        None,
        description="not_in_model: the model was trained before the product appeared; "
        "no_item_similarity: the live model cannot compare products",
    )
    model_version: str
    recommendations: list[ScoredProduct]


# -- query parameters ------------------------------------------------------------------------


class RecommendQuery(BaseModel):
    user_id: Annotated[int, Field(ge=1, le=MAX_ID, description="the user"), Digits]
    n: Annotated[int, Field(ge=1, le=100, description="how many products"), Digits] = 5
    explain: Literal["true", "false", "1", "0"] = Field(
        "false", description="add `because`: the user's past products behind each one"
    )
    diversity: str = Field(
        "0",
        pattern=r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?|\.[0-9]{1,6})$",
        description="0 (plain ranking) to 1: re-rank by maximal marginal relevance",
    )
    offset: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_LIST_END - 1,
            description="skip this many of the best eligible products (offset + n at most 1000)",
        ),
        Digits,
    ] = 0
    category: (
        list[Annotated[str, Field(min_length=1, max_length=CATEGORY_CHARS, pattern=TEXT_PATTERN)]]
        | None
    ) = Field(
        None,
        max_length=MAX_CATEGORIES,
        description="only products of these categories (repeat the parameter for several)",
    )
    exclude: str | None = Field(
        None,
        pattern=r"^[0-9]{1,19}(,[0-9]{1,19}){0,999}$",
        description="comma-separated product ids never to list (at most 1000)",
    )
    include_purchased: Literal["true", "false", "1", "0"] = Field(
        "false", description="list products the user bought too (left out by default)"
    )


MAX_SESSION_ITEMS = 1_000


class SessionBody(BaseModel):
    """An anonymous session: its products, most recent last, and the filters of /recommend."""

    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        min_length=1,
        max_length=MAX_SESSION_ITEMS,
        description="the session's product ids, most recent last (a product twice counts twice)",
    )
    n: int = Field(5, ge=1, le=100, description="how many products")
    offset: int = Field(
        0,
        ge=0,
        le=MAX_LIST_END - 1,
        description="skip this many of the best eligible products (offset + n at most 1000)",
    )
    category: list[
        Annotated[str, Field(min_length=1, max_length=CATEGORY_CHARS, pattern=TEXT_PATTERN)]
    ] = Field([], max_length=MAX_CATEGORIES, description="only products of these categories")
    exclude: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        [], max_length=MAX_EXCLUDED, description="product ids never to list (at most 1000)"
    )
    explain: bool = Field(False, description="add `because`: the session's products behind each")
    diversity: float = Field(
        0.0, ge=0, le=1, description="0 (plain ranking) to 1: re-rank by maximal marginal relevance"
    )


class ListLengthQuery(BaseModel):
    n: Annotated[int, Field(ge=1, le=100, description="how many products"), Digits] = 5


class SimilarQuery(BaseModel):
    product_id: Annotated[
        int, Field(ge=1, le=MAX_ID, description="the product whose neighbours to list"), Digits
    ]
    n: Annotated[int, Field(ge=1, le=100, description="how many products"), Digits] = 5


class ProductPageQuery(BaseModel):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="products per page"), Digits] = 100
    cursor: str | None = Field(
        None,
        pattern=r"^[0-9]{1,19}$",
        description="the next value of the previous page (absent: the first page)",
    )
    category: str | None = Field(
        None,
        min_length=1,
        max_length=CATEGORY_CHARS,
        pattern=TEXT_PATTERN,
        description="only this category",
    )


class HistoryPageQuery(BaseModel):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="interactions per page"), Digits] = (
        100
    )
    cursor: str | None = Field(
        None,
        pattern=r"^[0-9]{1,19}\.[0-9]{1,19}$",
        description="the next value of the previous page (absent: the newest interactions)",
    )


# -- catalog and history -------------------------------------------------------------------------


class Product(BaseModel):
    """A catalog entry; name, category and price are null for a product known by id only."""

    product_id: int = Field(ge=1, le=MAX_ID)
    name: str | None
    category: str | None
    price: float | None
    available: bool = Field(description="false: never recommended, explained or listed as similar")


class ProductPage(BaseModel):
    products: list[Product]
    next: str | None = Field(description="pass as cursor for the next page; null on the last")


class ProductIn(BaseModel):
    """A product to add or update (PUT /products)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    product_id: int = Field(ge=1, le=MAX_ID)
    name: str = Field(min_length=1, max_length=NAME_CHARS, pattern=NAME_PATTERN)
    category: str = Field(min_length=1, max_length=CATEGORY_CHARS, pattern=NAME_PATTERN)
    # strict: a JSON number, never a string or a boolean; ints are taken as floats.
    price: float = Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)
    # Optional: absent keeps a known product's availability (a new one is available).
    available: bool | None = Field(
        None,
        description="false: never recommended, explained or listed as similar, from the "
        "next request on every server; true: back again; absent: unchanged",
    )


class ProductBatch(RootModel[list[ProductIn]]):
    """An array of 1 to 10,000 products, each product_id once, written all or nothing."""

    root: list[ProductIn] = Field(min_length=1, max_length=MAX_PRODUCTS_PER_PUT)


EventType = Literal["view", "click", "cart", "purchase", "rating", "dislike"]
if get_args(EventType) != EVENT_TYPES:  # pragma: no cover - a type added in one place only
    raise AssertionError("EventType must name recsys.data.interactions.EVENT_TYPES")


class Accepted(BaseModel):
    accepted: int = Field(ge=1, description="how many were written")


class EventsAccepted(BaseModel):
    accepted: int = Field(ge=1, description="how many events the batch held: each is recorded")
    new: int = Field(ge=0, description="how many were stored by this request")
    known: int = Field(
        ge=0,
        description="how many the store already held by their event_id (a batch sent again): "
        "not stored twice",
    )


class HistoryEntry(BaseModel):
    product_id: int = Field(ge=1, le=MAX_ID)
    type: EventType
    value: int | None = Field(ge=1, le=5, description="a rating's stars; null for other types")
    purchased: bool = Field(description="true exactly for a purchase")
    timestamp: str = Field(description="UTC, like 2026-11-29T10:00:00Z")


class History(BaseModel):
    """A user's interactions, newest first (GET /users/<id>/history)."""

    user_id: int = Field(ge=1, le=MAX_ID)
    interactions: list[HistoryEntry]
    next: str | None = Field(description="pass as cursor for the next page; null on the last")


class UserDeletion(BaseModel):
    """The audit record of a deletion (DELETE /users/<id>): who, when, how many rows; no data."""

    user_id: int = Field(ge=1, le=MAX_ID)
    deleted_at: str = Field(description="UTC, like 2026-11-29T10:00:00Z")
    deleted_by: str = Field(description="the API key's name (key-...), or open when no key is set")
    rows: dict[str, int] = Field(description="table -> rows deleted from it")


class UserExport(BaseModel):
    """Every stored fact about a user (GET /users/<id>/export), each row with all its columns."""

    user_id: int = Field(ge=1, le=MAX_ID)
    user: dict[str, Any] | None = Field(description="the user row; null when only events name them")
    interactions: list[dict[str, Any]]
    exposures: list[dict[str, Any]]
    exposure_events: list[dict[str, Any]]


# -- the existing endpoints' shapes (documented; parsed by recsys.web.query_params) ------------


class EventIn(BaseModel):
    """One thing a user did with a product: a `type`, or (the older form) `purchased` alone."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [{"required": ["type"]}, {"required": ["purchased"]}]},
    )

    user_id: int = Field(ge=1, le=MAX_ID)
    product_id: int = Field(ge=1, le=MAX_ID)
    type: EventType | None = Field(
        None,
        description="what the user did; a dislike keeps the product out of the user's lists "
        "at once. Without it, `purchased` says: a click, or a purchase",
    )
    value: int | None = Field(
        None, ge=1, le=5, description="the stars of a rating (1-5); only on a rating"
    )
    purchased: Literal[0, 1] | bool | None = Field(
        None,
        description="the older form of a click (0) or a purchase (1); next to a `type`, "
        "1 exactly for a purchase",
    )
    event_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="the sender's id of the event, unique per store: sent again (a retried "
        "batch) it is not stored twice; reused for another event it is refused (409)",
    )
    timestamp: str | None = Field(
        None,
        pattern=r"^" + ISO_WITH_OFFSET.pattern + "$",
        description="ISO-8601 with a UTC offset (2026-11-29T10:00:00Z), from 1970-01-01 "
        "to one day after now; default: when it arrives",
    )
    recommendation_id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="the recommendation_id of the /recommend answer that listed the product "
        "(credits the A/B test's variant)",
    )


class EventBatch(
    RootModel[EventIn | Annotated[list[EventIn], Field(min_length=1, max_length=10_000)]]
):
    """One event or an array of 1 to 10,000, recorded all or nothing."""


class RetrainStarted(BaseModel):
    job_id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    status_url: str


class GateSplit(BaseModel):
    protocol: Literal["holdout"]
    test_fraction: float = Field(description="share of each user's products held out")
    seed: int
    max_eval_users: int | None = Field(description="held-out users ranked at most (a sample)")
    test_users: int = Field(description="users compared: held-out users the live version never saw")
    relevant: str = Field(description="which held-out products count")


class GateRecord(BaseModel):
    """The quality gate's judgement of one trained version."""

    decision: Literal["accepted", "rejected", "forced"] = Field(
        description="rejected: kept from going live; forced: published by `train --force`"
    )
    metric: str = Field(description="the figure compared, ndcg@10")
    tolerance: float = Field(description="how much worse than the live figure, as a share of it")
    candidate: float | None = Field(description="the new version's figure on the split")
    live: float | None = Field(description="the live version's figure on the same split")
    live_version: str | None = Field(description="the version serving when it was judged")
    least: float | None = Field(None, description="the candidate's bar: live x (1 - tolerance)")
    split: GateSplit
    reason: str


class GateDecision(GateRecord):
    """The quality gate's last decision, with the version it judged."""

    version: str = Field(description="the judged version (a rejected one never served)")
    model_type: str
    trained_at: str
    summary: str = Field(description="the decision and both figures in one line")


class Job(BaseModel):
    job_id: str
    state: Literal["queued", "running", "succeeded", "rejected", "failed"]
    trigger: str
    requested_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    version: str | None
    metrics: dict[str, Any] | None
    error: ErrorDetail | None
    gate: GateRecord | None = Field(description="the quality gate's record of the version")


class LiveModelInfo(BaseModel):
    version: str
    model_type: str
    params: dict[str, Any]
    trained_at: str
    data_fingerprint: str
    metrics: dict[str, Any]
    training: dict[str, Any]
    fallback_type: str | None
    gate: GateRecord | None = Field(description="how the quality gate let this version live")
    last_gate_decision: GateDecision | None = Field(
        description="the gate's newest decision (about this version or a later, rejected one)"
    )


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    missing: list[Literal["model", "database"]] | None = None
    error: ErrorDetail | None = None


# -- /stats ------------------------------------------------------------------------------------


class ProductFigures(BaseModel):
    product_id: int
    name: str | None = None
    category: str | None = None
    clicks: int
    purchases: int
    conversion: float


class LongTail(BaseModel):
    head_catalog_share: float = Field(description="the most clicked share of products ...")
    head_products: int = Field(description="... that many products ...")
    head_click_share: float = Field(description="... gather this share of all clicks")
    click_share: float = Field(description="this share of all clicks ...")
    products_for_click_share: int = Field(description="... needs this many products ...")
    catalog_share_for_click_share: float = Field(description="... this share of them")


class CategoryFigures(BaseModel):
    mean_affinity: dict[str, float] = Field(description="mean share of a user's clicks")
    users_by_top_category: dict[str, int] = Field(description="users whose favourite it is")


class DataFigures(BaseModel):
    """The EDA report's summary.json, computed on the event store."""

    interactions: int
    users: int
    products: int = Field(description="products clicked at least once")
    catalog_products: int | None
    purchases: int
    events_by_type: dict[EventType, int] = Field(
        description="how many events of each type (view, click, cart, purchase, rating, dislike)"
    )
    conversion: float | None = Field(description="purchases per click; null without clicks")
    clicks_per_user: dict[str, float] | None = Field(
        description="count, mean, std, min, 25%, 50%, 75%, max"
    )
    most_clicked: list[ProductFigures]
    long_tail: LongTail | None
    categories: CategoryFigures | None = Field(description="null when no catalog has categories")


class ModelFigures(BaseModel):
    version: str
    model_type: str
    trained_at: str
    selected_by: str | None
    metrics: dict[str, Any] = Field(description="offline metrics measured at training")
    selection_reason: str | None
    candidates: dict[str, dict[str, Any]] | None = Field(
        description="with MODEL=auto, each candidate model's metrics"
    )


class Stats(BaseModel):
    """The dashboard's numbers."""

    computed_at: str = Field(description="when the store was read (figures are cached briefly)")
    data: DataFigures
    model: ModelFigures | None = Field(description="null before a model is published")
    gate: GateDecision | None = Field(description="the quality gate's last decision")
    experiment: dict[str, Any] | None = Field(description="the running A/B test's report")
