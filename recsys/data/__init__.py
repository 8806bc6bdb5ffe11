"""Stage 1: the interaction log, its validation, catalogs, the simulator and EDA."""
