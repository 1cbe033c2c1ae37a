"""Errors the CLI reports without a traceback."""


class UsageError(Exception):
    """Something the user can fix (unknown run, unreachable store, ...): exit status 2."""


class RunFailed(RuntimeError):
    """Training raised; the MLflow run is marked FAILED with the error: exit status 1."""
