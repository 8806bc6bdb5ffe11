"""Train ALS on a Spark cluster and publish it for the servers: the spark-submit entry point.

The app's settings come from the environment as for any process of the
service (``RECSYS_DATABASE_URL``, ``RECSYS_MODEL_DIR``, ``RECSYS_MODEL=als``);
spark-submit's ``--master`` and resources apply. The driver reads the event
store, the executors fit ALS, and the driver publishes the same artifact the
single-machine path writes, into the shared model directory.

Usage:
    zip -qr recsys.zip recsys app.py
    spark-submit --master spark://HOST:7077 --deploy-mode client \\
        --py-files recsys.zip tools/spark_train.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app


def main() -> int:
    app = create_app()
    runtime = app.extensions["recsys.runtime"]
    meta = runtime.train_exclusively(engine="spark")
    print(f"published {meta.version} ({meta.model_type}) on {meta.training['interactions']} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
