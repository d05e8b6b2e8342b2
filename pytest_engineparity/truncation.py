"""truncation checks (being written)."""


class TruncationChecks:
    """Mixin for EnginePair."""
