"""Shared test setup: never touch a model hub; the embedded model is prepared once."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NO_COLOR", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def model_dir() -> str:
    from pytest_engineparity.models import embedded_model_dir

    return str(embedded_model_dir())
