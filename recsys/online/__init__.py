"""The online path: answer a user from the live model, in milliseconds.

A request goes through one pipeline (candidates -> filters -> page ->
describe), with the popular list as the fallback component when no personal
list can be made, and one cache lookup. Similar products come from the same
live model. Nothing here trains, and nothing imports Flask.
"""

from recsys.online.history_cache import HistoryCache, RedisOutage
from recsys.online.invalidation import InvalidationBus
from recsys.online.service import (
    NO_FILTER,
    AnswerCache,
    ListFilter,
    NoAnswerCache,
    NoLiveModelError,
    Pipeline,
    RecommendationAnswer,
    RecommendationService,
    RecommendRequest,
    compact_json,
)
from recsys.online.similar import UnknownProductError, similar_products

__all__ = [
    "NO_FILTER",
    "AnswerCache",
    "HistoryCache",
    "InvalidationBus",
    "ListFilter",
    "NoAnswerCache",
    "NoLiveModelError",
    "Pipeline",
    "RecommendRequest",
    "RecommendationAnswer",
    "RecommendationService",
    "RedisOutage",
    "UnknownProductError",
    "compact_json",
    "similar_products",
]
