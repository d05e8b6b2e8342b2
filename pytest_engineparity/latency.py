"""latency checks (being written)."""


class LatencyChecks:
    """Mixin for EnginePair."""
