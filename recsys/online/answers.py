"""What a recommendation request asks for and what its answer holds.

``RecommendRequest`` is one parsed ``GET /recommend``; its ``key`` names a
plain request (no explanation or re-ranking) among cached answers.
``RecommendationAnswer`` is the list, how it was made, and its JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import orjson

# Why a personal list was not possible.
UNKNOWN_USER = "unknown_user"  # no event of this user was ever recorded
NOT_IN_MODEL = "not_in_model"  # events exist, but none on a product the model can use
# Why an answer is less than complete.
STORE_UNAVAILABLE = "store_unavailable"  # purchases could not be read: none excluded


def compact_json(body: dict[str, Any]) -> bytes:
    """Return an answer's body as compact UTF-8 JSON with a final newline, as ``jsonify`` ends it.

    orjson, not the standard library: every uncached answer is encoded, and
    orjson does it about ten times faster. Non-ASCII names come as UTF-8, not
    ``\\u`` escapes (the same JSON text), and a non-finite number as null.
    numpy numbers are written as numbers (the standard library takes numpy
    floats too; orjson refuses them unless told).
    """
    return orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


_Value = TypeVar("_Value")


class kept_property(Generic[_Value]):  # noqa: N801 (named as the decorator it stands for)
    """``functools.cached_property`` without its lock, for the answers' frozen dataclasses.

    Python 3.11's cached_property takes one lock for every instance of the
    class while it computes, which the request threads took in turn. The value
    is made on first use and kept in the instance's ``__dict__`` (beside the
    fields, which a frozen dataclass would refuse), where later reads find it
    before this descriptor. Two threads asking at once both compute it and
    keep equal values.
    """

    def __init__(self, make: Callable[[Any], _Value]):
        self._make = make
        self._name = make.__name__
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: Any, owner: type | None = None) -> _Value:
        if instance is None:
            return self  # type: ignore[return-value]  # read on the class: the descriptor
        value = instance.__dict__[self._name] = self._make(instance)
        return value


@dataclass(frozen=True)
class ListFilter:
    """Which products a list may hold, besides what the model ranks.

    Attributes:
        categories: Only products of these categories (empty: any category).
            A product the catalog gives no category is in none.
        exclude: Products never to list (a shop's own exclusion list).
        include_purchased: List products the user bought too (left out by default).
    """

    categories: frozenset[str] = frozenset()
    exclude: frozenset[int] = frozenset()
    include_purchased: bool = False

    @kept_property
    def key(self) -> FilterKey:
        """Return what identifies these filters among cached answers, in bounded memory.

        An exclusion list (up to 1,000 ids) is named by a 16-byte BLAKE2 digest
        of its sorted ids: cached answers cost the same whatever a shop excludes.
        Computed when first asked for: without the cache no request needs it.
        """
        digest = None
        if self.exclude:
            digest = _digest(np.sort(np.fromiter(self.exclude, np.int64, len(self.exclude))))
        return FilterKey(self.categories, self.include_purchased, digest)

    def left_out(self, purchased: frozenset[int]) -> frozenset[int]:
        """Return the products left out of a list for a user who bought ``purchased``."""
        if self.include_purchased or not purchased:
            return self.exclude
        return self.exclude | purchased if self.exclude else purchased


NO_FILTER = ListFilter()


class FilterKey(NamedTuple):
    """``ListFilter.key``: the filters as cached answers name them."""

    categories: frozenset[str]
    include_purchased: bool
    exclude_digest: bytes | None  # None: no exclusion list


class AnswerKey(NamedTuple):
    """What names a plain request (no explanation or re-ranking) among cached answers."""

    user_id: int
    n: int
    offset: int
    filters: FilterKey

    @property
    def excluding(self) -> bool:
        """Whether the request has an exclusion list (such answers are cached apart)."""
        return self.filters.exclude_digest is not None


def _digest(sorted_ids: np.ndarray) -> bytes:
    return hashlib.blake2b(sorted_ids.tobytes(), digest_size=16).digest()


@dataclass(frozen=True)
class RecommendRequest:
    """One request for a user's list.

    Attributes:
        user_id: The user; None for an anonymous session (``POST /recommend/session``).
        n: How many products.
        offset: How many of the best eligible products to skip (paging:
            ``offset=10, n=10`` is the second page of ten).
        filters: Categories to keep, products to exclude, and whether
            purchases may be listed.
        explain: Also name, per product, the user's past products that
            contributed most (``because``; models with EXPLAIN).
        diversity: 0 (the plain ranking) to 1: re-rank the model's best
            candidates by maximal marginal relevance.
    """

    user_id: int | None
    n: int
    offset: int = 0
    filters: ListFilter = NO_FILTER
    explain: bool = False
    diversity: float = 0.0

    @property
    def plain(self) -> bool:
        """Whether the request asks for the ranking as it is (such answers are cached)."""
        return not self.explain and self.diversity == 0

    @kept_property
    def key(self) -> AnswerKey:
        """Return what names the request among cached answers (plain requests of users only).

        Made once per request object: /recommend memoises its parsed requests.
        """
        assert self.user_id is not None, "a session's answers are not cached"
        return AnswerKey(self.user_id, self.n, self.offset, self.filters.key)


@dataclass(frozen=True)
class RecommendedProduct:
    """One product in an answer, with the model's score.

    ``explored``: the product fills an exploration slot (new or rarely shown,
    chosen to collect feedback: ``recsys.online.exploration``); its score is
    the slot's, not the model's. Only explored products carry the field.
    """

    product_id: int
    name: str | None
    category: str | None
    score: float
    explored: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape (what ``dataclasses.asdict`` gives, without its deep copies)."""
        body: dict[str, Any] = {
            "product_id": self.product_id,
            "name": self.name,
            "category": self.category,
            "score": self.score,
        }
        if self.explored:
            body["explored"] = True
        return body


@dataclass(frozen=True)
class Reason:
    """One of the user's past products behind a recommendation, and its weight."""

    product_id: int
    name: str | None
    weight: float


@dataclass(frozen=True)
class RecommendationAnswer:
    """A ranked product list for one user, and how it was made.

    Attributes:
        user_id: Who asked (None for an anonymous session).
        strategy: The model that made the list (``svd``, ``popular``, ...).
        recommendations: Best first.
        model_version: The published model version that answered.
        fallback_reason: Why a personal list was not possible, if it was not.
        degraded: Why the answer is incomplete (``store_unavailable``: the
            user's purchases could not be read, so none were excluded).
        because: When explanations were asked for: per recommendation (same
            order), the user's past products that contributed most (empty
            when the model cannot explain, as for popularity).
        history_events: How many of the user's events the list was made
            from (their history as it was read; 0 when it could not be read).
    """

    user_id: int | None
    strategy: str
    recommendations: list[RecommendedProduct]
    model_version: str
    fallback_reason: str | None = None
    degraded: str | None = None
    because: list[list[Reason]] | None = None
    history_events: int = 0

    @kept_property
    def json_body(self) -> bytes:
        """Return the answer as compact JSON, encoded once however often it is served."""
        return compact_json(self.to_dict())

    @kept_property
    def shown(self) -> tuple[tuple[int, ...], int]:
        """Return the listed products' ids and how many of them fill exploration slots.

        Worked out once per answer (as ``json_body``): every serving of a
        cached answer counts them.
        """
        items = self.recommendations
        return tuple([item.product_id for item in items]), sum([item.explored for item in items])

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of the answer."""
        body: dict[str, Any] = {} if self.user_id is None else {"user_id": self.user_id}
        body["strategy"] = self.strategy
        if self.fallback_reason is not None:
            body["fallback_reason"] = self.fallback_reason
        if self.degraded is not None:
            body["degraded"] = self.degraded
        body["model_version"] = self.model_version
        body["history_events"] = self.history_events
        body["recommendations"] = [item.to_dict() for item in self.recommendations]
        if self.because is not None:
            for item, reasons in zip(body["recommendations"], self.because, strict=True):
                item["because"] = [dataclasses.asdict(reason) for reason in reasons]
        return body
