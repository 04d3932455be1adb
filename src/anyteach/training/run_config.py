"""One transfer run as a YAML file (`anyteach transfer --config run.yaml`): the keys of a study's
method entry (`name`, the method, and `options`, every training and method option) plus the run's
`student`, `teacher` (one reference or a list; `teachers` is the same) and `data`. The command's
flags override the file's values, option by option.

```yaml
student: timm:resnet10t@student.safetensors
teacher: timm:mobilenetv3_small_050@teacher.safetensors
data: imagefolder:/data/images
name: pl+ens+wise
options: {epochs: 5, batch_size: 64}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import AnyteachError
from ..core.options import METHOD_OPTIONS, TRAINING_OPTIONS
from ..methods import METHODS

RUN_CONFIG_KEYS = ("student", "teacher", "teachers", "data", "name", "method", "options")
"""The keys a run file may hold (`method` is another spelling of `name`)."""


@dataclass(frozen=True)
class RunConfig:
    """A transfer run read from a file; None where the file leaves it to the flags."""

    student: str | None = None
    teachers: list[str] = field(default_factory=list)
    data: str | None = None
    method: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _text(value: Any, key: str, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnyteachError(f"{path}: {key} must be a non-empty string, got {value!r}")
    return value.strip()


def read_run_config(path: str | Path) -> RunConfig:
    """Read and check a run file (keys, types, option names; values are checked by `transfer`).

    Raises:
        AnyteachError: a missing or unreadable file, an unknown key or option, a wrong type, an unknown method.
    """
    import yaml

    path = Path(path)
    try:  # bytes: PyYAML reads UTF-8 and UTF-16 (by the byte-order mark) and refuses other encodings in one error
        raw = yaml.safe_load(path.read_bytes())
    except FileNotFoundError:
        raise AnyteachError(f"run file not found: {path}") from None
    except yaml.reader.ReaderError as e:
        raise AnyteachError(
            f"{path} is not a UTF-8 (or UTF-16) text file ({' '.join(str(e).split())}); save it as UTF-8"
        ) from e
    except yaml.YAMLError as e:
        raise AnyteachError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise AnyteachError(f"{path} must be a mapping of {', '.join(RUN_CONFIG_KEYS)}, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in RUN_CONFIG_KEYS]
    if unknown:
        raise AnyteachError(f"{path}: unknown key {unknown[0]!r}; a run file holds {', '.join(RUN_CONFIG_KEYS)}")
    if "name" in raw and "method" in raw:
        raise AnyteachError(f"{path}: give the method once, as name (or method), not both")
    method = raw.get("name", raw.get("method"))
    if method is not None:
        method = _text(method, "name", path)
        if method not in METHODS:
            raise AnyteachError(f"{path}: unknown method {method!r}; known: {', '.join(METHODS)}")
    if "teacher" in raw and "teachers" in raw:
        raise AnyteachError(f"{path}: give teacher or teachers, not both")
    teachers = raw.get("teacher", raw.get("teachers")) or []
    teachers = [teachers] if isinstance(teachers, str) else teachers
    if not isinstance(teachers, list):
        raise AnyteachError(f"{path}: teacher must be a reference or a list of references, got {teachers!r}")
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise AnyteachError(f"{path}: options must be a mapping of option: value, got {type(options).__name__}")
    for key in options:
        if key not in TRAINING_OPTIONS and key not in METHOD_OPTIONS:
            raise AnyteachError(f"{path}: unknown option {key!r} in options (see `anyteach transfer --help`)")
    return RunConfig(
        student=_text(raw["student"], "student", path) if raw.get("student") is not None else None,
        teachers=[_text(t, "teacher", path) for t in teachers],
        data=_text(raw["data"], "data", path) if raw.get("data") is not None else None,
        method=method,
        options=dict(options),
    )


__all__ = ["RUN_CONFIG_KEYS", "RunConfig", "read_run_config"]
