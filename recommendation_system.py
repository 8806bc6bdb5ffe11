"""The default recommendation pipeline, built at import; run it for the RMSE.

``import recommendation_system`` simulates the shop (100 users, 20 products,
Faker), ranks the top-5 most-clicked products, trains Surprise's SVD and
measures its RMSE and MAE, and those of a blend of rating models and of a
global-mean baseline, on the holdout split ``evaluate`` uses (20% of each
user's rows, seed 0), so both print the same figures. Nothing is written to
disk.

``python recommendation_system.py`` prints the RMSE block; ``--help`` lists
the other commands (generate, eda, evaluate, tune).
"""

import sys

if __name__ == "__main__":
    # The command line builds the pipeline only for the commands that use it
    # (rmse, eda without --data), so `--help` and `generate` start at once;
    # an import never loads the command line at all.
    from recsys.cli.main import main

    sys.exit(main())

from recsys.evaluation.default_pipeline import run_pipeline

pipeline = run_pipeline()

catalog = pipeline.shop.catalog
users = pipeline.shop.users
interactions = pipeline.shop.interactions
ratings = pipeline.feedback
top5 = pipeline.top5
model = pipeline.model
evaluation = pipeline.evaluation
rmse = evaluation.svd.rmse
mae = evaluation.svd.mae
blend_rmse = evaluation.blend.rmse
baseline_rmse = evaluation.baseline.rmse
