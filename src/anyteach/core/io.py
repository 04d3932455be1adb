"""Atomic file writes, strict JSON, safe file names and the cache directory.

Every result or checkpoint anyteach writes goes to a temporary file in the same directory first and
is then renamed over the target, so an interrupted write never replaces a good file with half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors.torch import save

from .errors import AnyteachError


def json_ready(value: Any) -> Any:
    """Plain JSON data: dicts with string keys (floats as `2`, `0.5`), lists, Python numbers (numpy and
    0-d torch scalars converted, arrays as nested lists) and `None` for NaN or infinity, so every file
    anyteach writes is strict JSON that any reader (and SQLite's `json_extract`) accepts."""
    if isinstance(value, Mapping):
        return {(f"{k:g}" if isinstance(k, float) else str(k)): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy / torch scalars and arrays
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def slug(text: str, length: int | None = None) -> str:
    """`text` made of filesystem-safe characters (letters, digits, `_.+-`), cut to `length`."""
    safe = re.sub(r"[^A-Za-z0-9_.+\-]+", "_", text)
    return safe[:length] if length is not None else safe


def cache_dir() -> Path:
    """Root of anyteach's caches (zoo weights, generated data, predictions).

    `ANYTEACH_CACHE` overrides it; otherwise `$XDG_CACHE_HOME/anyteach` or `~/.cache/anyteach`.
    """
    if os.environ.get("ANYTEACH_CACHE"):
        root, named = Path(os.environ["ANYTEACH_CACHE"]).expanduser(), "ANYTEACH_CACHE"
    elif os.environ.get("XDG_CACHE_HOME"):
        root, named = Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "anyteach", "XDG_CACHE_HOME"
    else:
        root, named = Path.home() / ".cache" / "anyteach", ""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        where = f"the environment variable {named}={os.environ[named]!r}" if named else f"the cache directory {root}"
        reason = "it is a file" if root.is_file() else (e.strerror or str(e)).lower()
        hint = f"set {named} to a writable directory" if named else "set ANYTEACH_CACHE to a writable directory"
        raise AnyteachError(f"{where} cannot be used as anyteach's cache ({reason}); {hint}") from e
    if not root.is_dir():
        raise AnyteachError(f"the cache directory {root} is not a directory; set ANYTEACH_CACHE to a directory")
    return root


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    if path.is_dir():
        raise AnyteachError(f"{path} is a directory; give the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as e:  # name the file the user knows, not the temporary one
        if e.filename not in (None, tmp) or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file anyteach (or a user) wrote.

    Args:
        path: the file.
        what: what the file is, for messages (`"run configuration"`).

    Raises:
        AnyteachError: the file is missing, unreadable or not valid JSON (the message names it).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise AnyteachError(f"{what} not found: {path}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnyteachError(f"cannot read {what} {path}: {e}") from e


@contextmanager
def exclusive_lock(path: str | Path, busy: str, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if needed) for the duration of the block.

    The operating system releases the lock when the process dies, however it dies, so a killed
    process never leaves a stale lock behind.

    Args:
        path: the lock file.
        busy: the message when another process holds the lock.
        wait: seconds to keep trying (a process that is exiting, e.g. the orphaned worker of a killed
            study driver, releases its locks within moments).

    Raises:
        AnyteachError: another process holds the lock (`busy` is the message).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise AnyteachError(busy) from e
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented strict JSON (`json_ready`), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_ready(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write `text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically (contiguous copies; shared storage is split)."""
    flat = {
        k: v.detach().contiguous().clone() if _shares_storage(v, tensors) else v.detach().contiguous()
        for k, v in tensors.items()
    }
    data = save(flat, metadata=metadata)  # serialised first: a full disk is then an OSError naming the file
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def tensors_readable(path: str | Path) -> bool:
    """The file is a complete safetensors file: its header parses and its data is as long as the header says
    (an empty, truncated or overwritten file is not). A flipped bit inside the data is not detected."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception:  # noqa: BLE001 - whatever safetensors raises for a bad file, the file is not readable
        return False
    return True


def _shares_storage(t: torch.Tensor, tensors: dict[str, torch.Tensor]) -> bool:
    ptr = t.untyped_storage().data_ptr()
    return sum(1 for v in tensors.values() if v.untyped_storage().data_ptr() == ptr) > 1


def torch_save(path: str | Path, obj: Any) -> None:
    """`torch.save` atomically. Only for anyteach's own checkpoints of plain tensors and numbers."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # serialised first: a full disk is then an OSError naming the file
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def disk_use(path: str | Path) -> int:
    """Bytes of all files under `path` (the directory itself, recursively)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


def human_bytes(count: float) -> str:
    """`1536` -> `1.5 kB` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


def file_digest(path: str | Path, length: int = 16) -> str:
    """Hex sha256 of a file's contents (first `length` characters)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def text_digest(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]
