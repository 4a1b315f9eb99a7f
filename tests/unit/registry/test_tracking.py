import pytest

from recsys.registry.tracking import redact


@pytest.mark.parametrize("uri, shown", [
    ("postgresql://mlflow:s3cret@db.internal:5432/mlflow",
     "postgresql://mlflow:***@db.internal:5432/mlflow"),
    ("https://alice:tok3n@mlflow.example.com/", "https://alice:***@mlflow.example.com/"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
])
def test_credentials_never_reach_logs_or_links(uri, shown):
    assert redact(uri) == shown
    assert "s3cret" not in redact(uri) and "tok3n" not in redact(uri)
