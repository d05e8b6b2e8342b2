"""pytest-engineparity: gate an LLM serving migration on output, latency, truncation and driver parity.

Importing this package is cheap: no engine, torch or sentence-transformers import happens here.
"""

from .types import Completion, EngineInfo, EngineLimits, GenerationRequest, Timings, TokenLogprobs

__version__ = "0.1.0"

__all__ = [
    "Completion",
    "EngineInfo",
    "EngineLimits",
    "GenerationRequest",
    "Timings",
    "TokenLogprobs",
    "__version__",
]
