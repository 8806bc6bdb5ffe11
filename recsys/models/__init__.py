"""Recommenders behind one interface; ``MODELS`` maps each name to its class."""

from recsys.models.base import Recommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.svd import SVDRecommender

MODELS: dict[str, type[Recommender]] = {
    PopularityRecommender.name: PopularityRecommender,
    SVDRecommender.name: SVDRecommender,
}
