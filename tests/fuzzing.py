"""The Hypothesis settings the property-based tests share (tests/run/test_fuzz.py,
tests/commands/test_fuzz_files.py): every run of the suite draws a fixed, derandomized set
of examples; SPQ_FUZZ=long adds a longer run per target from a fixed seed."""
import os

import pytest
from hypothesis import HealthCheck

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
QUICK = dict(deadline=None, derandomize=True, database=None, suppress_health_check=HEALTH)


def slow(examples: int) -> dict:
    """The settings of the longer run: `examples` examples, from the seed the test gives."""
    return dict(deadline=None, database=None, max_examples=examples, suppress_health_check=HEALTH)


def long_run(path: str):
    """The mark that keeps a longer run out of the suite unless SPQ_FUZZ=long."""
    return pytest.mark.skipif(os.environ.get("SPQ_FUZZ") != "long",
                              reason=f"the longer fuzz run: SPQ_FUZZ=long python -m pytest {path}")
