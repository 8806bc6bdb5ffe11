"""Stage 2: recommenders behind one interface; ``MODELS`` maps each name to its class."""

from recsys.errors import quote
from recsys.models.als import ALSRecommender
from recsys.models.base import AUTO, Recommender
from recsys.models.blend import BlendRecommender
from recsys.models.ease import EASERecommender
from recsys.models.itemknn import ItemKNNRecommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.ranker import RankerRecommender
from recsys.models.svd import SVDRecommender

MODELS: dict[str, type[Recommender]] = {
    PopularityRecommender.name: PopularityRecommender,
    SVDRecommender.name: SVDRecommender,
    ALSRecommender.name: ALSRecommender,
    EASERecommender.name: EASERecommender,
    ItemKNNRecommender.name: ItemKNNRecommender,
    BlendRecommender.name: BlendRecommender,
    RankerRecommender.name: RankerRecommender,
}

# Other names users type for a registered model.
MODEL_ALIASES = {"popularity": "popular"}

# The candidates of AUTO, cheapest first (fit time on ml-latest-small: popular,
# then itemknn and svd, then als, then ease's n_items^2 inversion); a tie on
# the selection metric goes to the cheaper one.
AUTO_CANDIDATES = ("popular", "itemknn", "svd", "als", "ease")


def canonical_model_name(name: str, allow_auto: bool = False) -> str:
    """Return the registry name of a model, accepting aliases such as "popularity".

    Args:
        name: What the user typed.
        allow_auto: Also accept "auto" (the service's automatic champion).

    Raises:
        ValueError: The name is not a known model.
    """
    name = MODEL_ALIASES.get(name.strip(), name.strip())
    if allow_auto and name == AUTO:
        return AUTO
    if name not in MODELS:
        known = sorted([*MODELS, *MODEL_ALIASES, *([AUTO] if allow_auto else [])])
        raise ValueError(f"unknown model {quote(name)}; expected one of {', '.join(known)}")
    return name


def accepted_model_names(allow_auto: bool = False, code: bool = False) -> str:
    """Return the accepted names in words, e.g. "popular (popularity), svd, ... or auto".

    Args:
        allow_auto: Include "auto".
        code: Quote each name as Markdown code (for a table of the docs).
    """
    quoted = (lambda n: f"`{n}`") if code else (lambda n: n)
    aliases = {target: alias for alias, target in MODEL_ALIASES.items()}
    names = [f"{quoted(n)} ({quoted(aliases[n])})" if n in aliases else quoted(n) for n in MODELS]
    if allow_auto:
        names.append(quoted(AUTO))
    return ", ".join(names[:-1]) + " or " + names[-1]


__all__ = [
    "AUTO",
    "AUTO_CANDIDATES",
    "MODELS",
    "MODEL_ALIASES",
    "Recommender",
    "accepted_model_names",
    "canonical_model_name",
]
