"""Stage 3: splits, metrics, evaluate, tune and the user's offline pipeline."""
