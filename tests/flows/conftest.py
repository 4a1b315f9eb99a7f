"""Flows run under one Prefect test server per session (it takes ~10 s to start); flows apply
their thread budget in the test process, so torch's threads are put back after each test."""

from __future__ import annotations

import pytest
import torch
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
