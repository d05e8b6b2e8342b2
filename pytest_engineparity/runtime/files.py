"""One atomic file writer for every file the plugin writes (reports, baselines, build sidecars).

Temp file in the same directory, flushed and fsynced, then ``os.replace``: a crash or an error
mid-write leaves the previous file intact and no temp file behind; two writers at once leave one
complete file. The result keeps the existing file's mode, else 0666 minus the umask (mkstemp's
0600 would hide a shared baseline or report from the rest of a team or CI).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

__all__ = ["atomic_write_text", "file_mode", "read_json_object", "process_tree"]


def file_mode(p: Path) -> int:
    try:
        return p.stat().st_mode & 0o777
    except OSError:
        pass
    try:  # Linux: read the umask without changing it (os.umask would, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def atomic_write_text(path: Union[str, "os.PathLike[str]"], text: str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode(p)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def read_json_object(path: Path, error: Callable[[Path, str], Exception], corrupt_hint: str) -> dict[str, Any]:
    """The JSON object stored in ``path``; ``error(path, message)`` for a file that cannot be read,
    is not JSON (``corrupt_hint`` says what to do) or holds something other than an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(path, f"cannot be read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(path, f"is corrupt (not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno});"
                          f" {corrupt_hint}") from None
    if not isinstance(doc, dict):
        raise error(path, f"must hold a JSON object, found {type(doc).__name__}")
    return doc


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (Linux ``/proc``; just ``[pid]`` elsewhere)."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            pass
    return seen
