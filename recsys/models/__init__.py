"""Stage 2: recommenders behind one interface; ``MODELS`` maps each name to its class."""

from recsys.models.als import ALSRecommender
from recsys.models.base import Recommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.svd import SVDRecommender

MODELS: dict[str, type[Recommender]] = {
    PopularityRecommender.name: PopularityRecommender,
    SVDRecommender.name: SVDRecommender,
    ALSRecommender.name: ALSRecommender,
}

# Other names users type for a registered model.
MODEL_ALIASES = {"popularity": "popular"}


def canonical_model_name(name: str) -> str:
    """Return the registry name of a model, accepting aliases such as "popularity".

    Raises:
        ValueError: The name is not a known model.
    """
    name = MODEL_ALIASES.get(name.strip(), name.strip())
    if name not in MODELS:
        known = sorted([*MODELS, *MODEL_ALIASES])
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(known)}")
    return name
