"""tensorrt_llm._tensorrt_engine (contract double): the TensorRT engine LLM class.

Facts ``llm_classes``: the module exists from 1.0 (PR #5312, ``from tensorrt_llm.llmapi.llm import
_TrtLLM as LLM``); importing it from a 0.17 double fails as it does on a 0.17 install. The class
itself is in ``_trt_backend``.
"""

from ._versions import TRAITS, VERSION

if not TRAITS.has_tensorrt_engine_module:
    raise ModuleNotFoundError(f"No module named 'tensorrt_llm._tensorrt_engine' (tensorrt_llm {VERSION})",
                              name="tensorrt_llm._tensorrt_engine")

from ._trt_backend import TrtLLM  # noqa: E402

__all__ = ["LLM"]


class LLM(TrtLLM):
    """TensorRT-engine LLM (contract: "Two LLM classes")."""
