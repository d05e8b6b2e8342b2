"""Engine directories for the ``tensorrt_llm`` contract double, made from the embedded model:
the shared example config.json (tests/data) with the model's dimensions and the given build
limits; ``rank0.engine`` is, for the double, the model's safetensors weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
EXAMPLE_CONFIG = HERE / "data" / "trtllm-engine-config-0.17.0.post1.json"


def make_engine_dir(root: Path, hf_dir: Path, *, gather_generation_logits: bool = True,
                    tokenizer_files: bool = True, version: str = "1.2.1", max_seq_len: int = 256,
                    max_input_len: int = 192, max_batch_size: int = 8, max_num_tokens: Optional[int] = None) -> Path:
    """An engine directory for the double (see the module docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(EXAMPLE_CONFIG.read_text())
    hf = json.loads((hf_dir / "config.json").read_text())
    rope = (hf.get("rope_parameters") or {}).get("rope_theta", hf.get("rope_theta"))
    pre = cfg["pretrained_config"]
    pre.pop("qwen_type", None)
    pre.update({
        "architecture": hf["architectures"][0], "dtype": "float32", "logits_dtype": "float32",
        "vocab_size": hf["vocab_size"], "hidden_size": hf["hidden_size"],
        "num_hidden_layers": hf["num_hidden_layers"], "num_attention_heads": hf["num_attention_heads"],
        "num_key_value_heads": hf["num_key_value_heads"], "intermediate_size": hf["intermediate_size"],
        "max_position_embeddings": hf["max_position_embeddings"], "hidden_act": hf["hidden_act"],
        "norm_epsilon": hf["rms_norm_eps"], "rotary_base": rope, "head_size": hf["head_dim"],
        "rotary_embedding_dim": hf["head_dim"], "tie_word_embeddings": hf["tie_word_embeddings"],
        "attn_bias": hf["attention_bias"], "mlp_bias": hf["mlp_bias"],
    })
    build = cfg["build_config"]
    build.update({"max_input_len": max_input_len, "max_seq_len": max_seq_len, "max_batch_size": max_batch_size,
                  "opt_batch_size": min(4, max_batch_size), "max_num_tokens": max_num_tokens or max_seq_len,
                  "gather_generation_logits": gather_generation_logits})
    build["plugin_config"].update({"dtype": "float32", "gemm_plugin": "float32"})
    cfg["version"] = version
    (root / "config.json").write_text(json.dumps(cfg, indent=2))
    (root / "rank0.engine").symlink_to(hf_dir / "model.safetensors")
    if tokenizer_files:
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (hf_dir / name).exists():
                (root / name).symlink_to(hf_dir / name)
    return root
