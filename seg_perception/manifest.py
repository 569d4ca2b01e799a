"""Model manifest: what each shipped model file is, and the checks before it is used.

``models/manifest.json`` maps an entry name (usually the backend name) to a
:class:`ModelEntry`. The export code in ``training/`` writes entries; the node's
backends read them and refuse files whose hash, shapes or class count disagree.

Tensor conventions of an entry:

* ``input``: ``layout`` (``NHWC``/``NCHW``), ``height``, ``width``, ``color`` (``RGB``),
  ``mean``/``std`` applied to 0..255 pixels (``(px - mean) / std``; ``[0,0,0]``/``[1,1,1]``
  when normalisation is baked into the model), ``dtype`` of the graph input.
* ``output``: ``layout`` and ``kind`` (``logits`` over ``num_classes`` channels).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .paths import data_candidates

MANIFEST_NAME = "manifest.json"
FORMATS = ("tflite", "onnx")
LAYOUTS = ("NHWC", "NCHW")


class ManifestError(ValueError):
    """A model file disagrees with its manifest entry, or the manifest is malformed."""


def sha256_file(path: os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class TensorSpec:
    layout: str = "NHWC"
    height: int = 0
    width: int = 0
    color: str = "RGB"
    mean: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    dtype: str = "float32"
    kind: str = "image"  # "image" for inputs, "logits" for outputs

    def validate(self, where: str) -> None:
        if self.layout not in LAYOUTS:
            raise ManifestError(f"{where}: layout {self.layout!r} not in {list(LAYOUTS)}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise ManifestError(f"{where}: mean/std need 3 values and std != 0")


@dataclass
class ModelEntry:
    name: str
    file: str
    format: str
    sha256: str
    num_classes: int
    class_variant: str = "full"
    architecture: str = ""
    input: TensorSpec = field(default_factory=TensorSpec)
    output: TensorSpec = field(default_factory=lambda: TensorSpec(kind="logits"))
    size_bytes: int = 0
    metrics: Dict[str, Any] = field(default_factory=dict)
    provenance: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ManifestError(f"{self.name}: format {self.format!r} not in {list(FORMATS)}")
        if self.num_classes < 2:
            raise ManifestError(f"{self.name}: num_classes must be >= 2")
        self.input.validate(f"{self.name}.input")
        self.output.validate(f"{self.name}.output")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelEntry":
        d = dict(d)
        try:
            d["input"] = TensorSpec(**d.get("input", {}))
            d["output"] = TensorSpec(**{"kind": "logits", **d.get("output", {})})
            entry = cls(**d)
        except TypeError as e:
            raise ManifestError(f"malformed manifest entry {d.get('name', '?')}: {e}") from e
        entry.validate()
        return entry

    def verify_file(self, path: os.PathLike) -> str:
        """Check the file exists and matches ``sha256``; return the hash."""
        p = Path(path)
        if not p.is_file():
            raise ManifestError(f"model file missing: {p}")
        digest = sha256_file(p)
        if digest != self.sha256:
            raise ManifestError(
                f"model file {p} has sha256 {digest[:12]}..., manifest entry {self.name!r} expects "
                f"{self.sha256[:12]}... (corrupt, truncated or replaced file)"
            )
        return digest


def default_models_dir() -> Path:
    """``models/``: from the source tree, or the installed share dir."""
    candidates = data_candidates("models")
    for c in candidates:
        if (c / MANIFEST_NAME).is_file():
            return c
    return candidates[0]


class Manifest:
    def __init__(self, directory: os.PathLike, entries: Dict[str, ModelEntry]):
        self.directory = Path(directory)
        self.entries = entries

    @classmethod
    def load(cls, directory: Optional[os.PathLike] = None) -> "Manifest":
        directory = Path(directory) if directory else default_models_dir()
        path = directory / MANIFEST_NAME
        if not path.is_file():
            return cls(directory, {})
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: not valid JSON: {e}") from e
        entries = {k: ModelEntry.from_dict({"name": k, **v}) for k, v in doc.get("models", {}).items()}
        return cls(directory, entries)

    def get(self, name: str) -> ModelEntry:
        if name not in self.entries:
            raise ManifestError(
                f"no manifest entry {name!r} in {self.directory / MANIFEST_NAME}; "
                f"available: {sorted(self.entries)}"
            )
        return self.entries[name]

    def path_of(self, entry: ModelEntry) -> Path:
        return self.directory / entry.file

    def put(self, entry: ModelEntry) -> None:
        entry.validate()
        self.entries[entry.name] = entry

    def save(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / MANIFEST_NAME
        doc = {"models": {k: {kk: vv for kk, vv in e.to_dict().items() if kk != "name"}
                          for k, e in sorted(self.entries.items())}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def make_entry(name: str, model_file: os.PathLike, fmt: str, num_classes: int, **kwargs: Any) -> ModelEntry:
    """Build an entry for a file on disk (hash and size filled in)."""
    p = Path(model_file)
    entry = ModelEntry(name=name, file=p.name, format=fmt, sha256=sha256_file(p),
                       num_classes=num_classes, size_bytes=p.stat().st_size, **kwargs)
    entry.validate()
    return entry
