"""quality checks (being written)."""


class QualityChecks:
    """Mixin for EnginePair."""
