"""tensorrt_llm.executor (contract double): the result types and RequestError.

Contract sections "Outputs (tensorrt_llm.executor.result)" and "Limits and errors"
(``tensorrt_llm.executor.utils.RequestError``).
"""

from .result import CompletionOutput, Logprob, RequestOutput
from .utils import RequestError

__all__ = ["CompletionOutput", "Logprob", "RequestError", "RequestOutput"]
