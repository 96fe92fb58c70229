"""Shared test settings: float64 by default for exact comparisons, a fixed hypothesis profile."""

import os

from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
