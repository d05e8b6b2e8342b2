"""Contract double of the ``tensorrt_llm`` package (see ../README.md), at the version chosen by
``TRTLLM_DOUBLE_VERSION`` (``_versions``; default 1.2.1).

Facts ``llm_classes``: from 1.0, ``tensorrt_llm.LLM`` is the PyTorch backend (default
``backend="pytorch"``) and takes a Hugging Face checkpoint dir, and the TensorRT engine class is
``tensorrt_llm._tensorrt_engine.LLM``; in 0.17 ``tensorrt_llm.LLM`` is the TensorRT class, which
builds an engine from a checkpoint. "SamplingParams": ``tensorrt_llm.SamplingParams``.
"""

from ._double_runtime import _BaseLLM
from ._trt_backend import TrtLLM
from ._versions import TRAITS, VERSION
from .sampling_params import SamplingParams

__version__ = VERSION

__all__ = ["LLM", "SamplingParams", "__version__"]

if TRAITS.llm_is_pytorch:
    class LLM(_BaseLLM):
        """PyTorch-backend LLM (contract: "Two LLM classes").

        ``LLM(model=hf_checkpoint_dir, ...)``; passing ``build_config`` raises ValueError pointing to
        ``tensorrt_llm._tensorrt_engine.LLM``; over-length prompts raise the max_num_tokens ValueError
        (contract "Limits and errors").
        """

        _backend = "pytorch"
else:
    class LLM(TrtLLM):  # type: ignore[no-redef]
        """0.17: the one LLM class is the TensorRT backend (facts llm_classes)."""
