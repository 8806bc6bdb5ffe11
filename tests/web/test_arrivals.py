"""ALS's new arrivals through the API: a returning customer is shown what arrived while away."""

import pandas as pd
import pytest

from recsys.training.train import TrainingSettings, reads_times, train_and_publish
from tests.builders import listed, runtime_of

NEW_PRODUCT = 11


def write_shop(directory) -> str:
    """Write a timed log and its catalog; return the log's path.

    Forty customers click products 1-10 in the first half of 2025; six more
    take product 11, which arrives in December.
    """
    rows = [
        (
            user,
            1 + (user * 7 + k * 3) % 10,
            int(k == 0),
            f"2025-{1 + (user + k) % 6:02d}-{1 + k:02d}",
        )
        for user in range(1, 41)
        for k in range(4)
    ]
    rows += [(user, NEW_PRODUCT, 1, f"2025-12-{user - 20:02d}") for user in range(41, 47)]
    log = pd.DataFrame(rows, columns=["user_id", "product_clicked", "purchased", "timestamp"])
    log["timestamp"] += "T10:00:00Z"
    log.to_csv(directory / "shop.csv", index=False)
    catalog = pd.DataFrame({"product_id": range(1, 12), "name": "p", "category": "c", "price": 1.0})
    catalog.to_csv(directory / "shop.products.csv", index=False)
    return str(directory / "shop.csv")


@pytest.mark.parametrize(("arrival_days", "new_product_first"), [(30, True), (0, False)])
def test_a_returning_customer_sees_the_new_arrival_first_only_with_arrivals_on(
    app_factory, tmp_path, arrival_days, new_product_first
):
    params = {"factors": 4, "arrival_days": arrival_days, "arrival_lift": 3.0, "uptake_lift": 0.0}
    app = app_factory(DATA_PATH=write_shop(tmp_path), MODEL="als")
    client = app.test_client()
    runtime = runtime_of(app)
    settings = TrainingSettings(model="als", model_params=params)
    assert reads_times(settings) is (arrival_days > 0)
    train_and_publish(runtime.store, runtime.registry, settings)
    assert runtime.refresh()
    # Customer 1 was last here in 2025's first half, before product 11 arrived.
    response = client.get("/recommend?user_id=1&n=11")
    assert response.status_code == 200
    assert response.get_json()["strategy"] == "als"
    touched = set(pd.read_csv(tmp_path / "shop.csv").query("user_id == 1")["product_clicked"])
    untouched = [product for product in listed(response) if product not in touched]
    assert (untouched[0] == NEW_PRODUCT) is new_product_first
    assert ("arrival_days" in client.get("/model").get_data(as_text=True)) is (arrival_days > 0)
