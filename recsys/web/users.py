"""A user's data: DELETE /users/<id> erases it everywhere, GET /users/<id>/export returns it."""

from __future__ import annotations

from flask import Blueprint, jsonify

from recsys.data.interactions import MAX_ID
from recsys.web.auth import authenticated_key, requires
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import operation
from recsys.web.schemas import UserDeletion, UserExport

bp = Blueprint("users", __name__)

# Ids outside 1..2^63-1 match no route: 404, like an unknown user.
USER_ID = f"<int(min=1, max={MAX_ID}):user_id>"
# Who deleted when the service runs without API keys.
OPEN_SERVICE = "open"


@bp.delete(f"/users/{USER_ID}")
@operation(
    "Delete every stored fact about a user, on every server at once",
    (200, UserDeletion),
    errors=[404],
    tags=["users"],
)
@requires("admin")
def delete_user(user_id: int):
    key = authenticated_key()
    record = runtime().delete_user(user_id, key.limit_key if key is not None else OPEN_SERVICE)
    if record is None:
        raise unknown_user(user_id)
    return jsonify(record.to_dict())


@bp.get(f"/users/{USER_ID}/export")
@operation(
    "Every stored fact about a user: their row, events and exposures",
    (200, UserExport),
    errors=[404],
    tags=["users"],
)
@requires("admin")
def export_user(user_id: int):
    found = runtime().store.export_user(user_id)
    if found is None:
        raise unknown_user(user_id)
    return jsonify(found)


def unknown_user(user_id: int) -> ApiError:
    """Return the 404 for a user the store knows nothing of."""
    return ApiError(404, "unknown_user", f"user_id {user_id} has no stored data")
