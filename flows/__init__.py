"""Prefect flows: thin and declarative; every step is a call into the ``recsys`` library."""
