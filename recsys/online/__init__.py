"""The online path: answer a user from the live model, in milliseconds.

A request goes through one pipeline (candidates -> filters -> page ->
describe), with the popular list as the fallback component when no personal
list can be made, and one cache lookup. Similar products come from the same
live model. A share of first pages explores new or rarely shown products,
whose impressions every process counts. Nothing here trains, and nothing imports Flask.
"""

from recsys.online.batch import recommend_users
from recsys.online.history_cache import HistoryCache, RedisOutage
from recsys.online.invalidation import InvalidationBus
from recsys.online.service import (
    NO_FILTER,
    AnswerCache,
    Exploration,
    ImpressionCounter,
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
    "Exploration",
    "HistoryCache",
    "ImpressionCounter",
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
    "recommend_users",
    "similar_products",
]
