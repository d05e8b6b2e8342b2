"""baseline checks (being written)."""


class BaselineChecks:
    """Mixin for EnginePair."""
