import datetime as dt
import doctest

import pytest
import requests
from mlflow.exceptions import MlflowException

from recsys import orchestration
from recsys.files import LockTimeout, StorageError
from recsys.orchestration import retry_on_io, started_late


def test_doctests():
    result = doctest.testmod(orchestration)
    assert result.attempted >= 2 and result.failed == 0


class State:
    def __init__(self, exc):
        self.exc = exc

    def result(self, raise_on_failure=True):
        return self.exc


def mlflow_server_gone() -> MlflowException:
    try:
        try:
            raise requests.exceptions.ConnectionError("Max retries exceeded")
        except requests.exceptions.ConnectionError as exc:
            # As mlflow.utils.rest_utils does it: the cause is only the implicit context.
            raise MlflowException(f"API request to http://127.0.0.1:5000 failed: {exc}")  # noqa: B904
    except MlflowException as wrapped:
        return wrapped


@pytest.mark.parametrize("exc, retry", [
    (LockTimeout("busy"), True),
    (StorageError(28, "No space left on device"), True),
    (requests.exceptions.ConnectionError("refused"), True),
    (mlflow_server_gone(), True),  # the tracking server went away: worth a retry
    (MlflowException("RESOURCE_DOES_NOT_EXIST"), False),
    (ValueError("bad input"), False),
    (None, False),
])
def test_only_io_trouble_is_retried(exc, retry):
    assert retry_on_io(None, None, State(exc)) is retry


def test_a_run_started_long_after_its_schedule_is_skipped():
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert not started_late(t, t + dt.timedelta(seconds=119), max_delay_s=120)
    assert started_late(t, t + dt.timedelta(seconds=121), max_delay_s=120)
    assert not started_late(None, max_delay_s=120)
    # naive means UTC
    assert started_late(t.replace(tzinfo=None), t + dt.timedelta(hours=2), max_delay_s=120)
