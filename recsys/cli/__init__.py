"""The command line of ``recommendation_system.py``."""
