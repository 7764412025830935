"""Human preference ratings: the crowdworker study as a small web app, its store, export and report."""

from imitlab.rate.db import RatingStore

__all__ = ["RatingStore"]
