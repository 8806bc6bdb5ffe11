"""Stage 5: artifacts, training jobs, the live model and the answering service."""
