"""Scoring: evaluating stored predictions with the competition metric, comparing arms over seeds, and the
colour-only floor every model must beat."""
