"""Recommendation library: simulation, data, models, evaluation and serving.

Nothing in this package imports Flask except ``recsys.web``.
"""
