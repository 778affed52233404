"""Reading a user's text file (config.json, --from-config, --gpu-catalog) as bytes, decoded with a
clear one-line PlannerError instead of a UnicodeDecodeError."""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ..specs.errors import PlannerError

MAX_BYTES = 64 * 2**20   # a training or model config is kilobytes; refuse to parse a 64 MiB file


def read_text(path: str | os.PathLike[str], what: str) -> str:
    """The file's text, decoded as UTF-8 (a UTF-8 byte-order mark is dropped); `what` names the file
    in the error ("config.json", "--from-config file", "GPU catalog file")."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise PlannerError(f"{what} {p} is {size / 2**20:,.0f} MiB: too large for a config file "
                               f"(at most {MAX_BYTES // 2**20} MiB); is it a weights file?")
        data = p.read_bytes()
    except PlannerError:
        raise
    except FileNotFoundError:
        raise PlannerError(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise PlannerError(f"{what} {p} is a folder, not a file") from None
    except OSError as e:   # permissions, a FIFO, ...: the OS's reason, one line
        raise PlannerError(f"{what} {p} could not be read: {e.strerror or type(e).__name__}") from None
    if b"\x00" in data[:8192]:
        raise PlannerError(f"{what} {p} is a binary file, not JSON or YAML text "
                           "(a weights or archive file? pass the text config)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PlannerError(f"{what} {p} is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}); "
                           "save it as UTF-8") from None


def load_yaml(text: str) -> object:
    """yaml.safe_load, except that exponent floats without a dot or sign (5e14, 1.2e14), which PyYAML
    (YAML 1.1) reads as strings, are floats, as YAML 1.2 and JSON read them."""
    import yaml   # lazily: only user YAML files need it

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(   # YAML 1.2 core schema float [yaml.org/spec/1.2.2 10.3.2]
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
        list("-+0123456789."))
    return yaml.load(text, Loader=Loader)   # noqa: S506 (a SafeLoader subclass)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Writes `data` as JSON to `path` via a temporary file and os.replace: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
