"""Contract double of the ``tensorrt_llm`` package (see ../README.md).

Contract (shared/engines/TENSORRT_LLM.md), "Two LLM classes": ``tensorrt_llm.LLM`` is the PyTorch
backend (default ``backend="pytorch"``) and takes a Hugging Face checkpoint dir; the TensorRT engine
class is ``tensorrt_llm._tensorrt_engine.LLM``. "SamplingParams": ``tensorrt_llm.SamplingParams``.
The version is the contract's "stable 1.2.1".
"""

from ._double_runtime import _BaseLLM
from .sampling_params import SamplingParams

__version__ = "1.2.1"

__all__ = ["LLM", "SamplingParams", "__version__"]


class LLM(_BaseLLM):
    """PyTorch-backend LLM (contract: "Two LLM classes").

    ``LLM(model=hf_checkpoint_dir, ...)``; passing ``build_config`` raises ValueError pointing to
    ``tensorrt_llm._tensorrt_engine.LLM``; over-length prompts raise the max_num_tokens ValueError
    (contract "Limits and errors").
    """

    _backend = "pytorch"
