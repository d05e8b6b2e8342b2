"""tensorrt_llm/version.py, as TensorRT-LLM has it: a literal ``__version__`` (tools read it without
importing the package). For the double this is the DEFAULT version; ``TRTLLM_DOUBLE_VERSION``
overrides it for importers (``_versions``), not for readers of this literal."""

__version__ = "1.2.1"
