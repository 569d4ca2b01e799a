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
from typing import Any

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
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    dtype: str = "float32"
    kind: str = "image"  # "image" for inputs, "logits" for outputs

    def validate(self, where: str) -> None:
        if self.layout not in LAYOUTS:
            raise ManifestError(f"{where}: layout {self.layout!r} not in {list(LAYOUTS)}")
        for key in ("mean", "std"):
            v = getattr(self, key)
            if not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, (int, float)) for x in v):
                raise ManifestError(f"{where}: {key} {v!r} is not a list of 3 numbers")
        if any(s == 0 for s in self.std):
            raise ManifestError(f"{where}: std must not contain 0")
        for key in ("height", "width"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ManifestError(f"{where}: {key} {v!r} is not a size")


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
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ManifestError(f"{self.name}: format {self.format!r} not in {list(FORMATS)}")
        if self.num_classes < 2:
            raise ManifestError(f"{self.name}: num_classes must be >= 2")
        self.input.validate(f"{self.name}.input")
        self.output.validate(f"{self.name}.output")

    @property
    def trained_on_val(self) -> bool:
        """A final model (split record ``train_on_val``): it learnt the validation photos of its split too,
        so its numbers on them are memory; its held-out twin gives the estimate."""
        split = self.provenance.get("split")
        return isinstance(split, dict) and bool(split.get("train_on_val"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelEntry:
        if not isinstance(d, dict):
            raise ManifestError(f"malformed manifest entry: expected an object, got {type(d).__name__}")
        d = dict(d)
        name = d.get("name", "?")
        try:
            for key in ("input", "output"):
                if not isinstance(d.get(key, {}), dict):
                    raise TypeError(f"{key} must be an object")
            d["input"] = TensorSpec(**d.get("input", {}))
            d["output"] = TensorSpec(**{"kind": "logits", **d.get("output", {})})
            entry = cls(**d)
        except TypeError as e:
            raise ManifestError(f"malformed manifest entry {name}: {e}") from e
        sha = entry.sha256
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise ManifestError(f"manifest entry {name}: sha256 {sha!r} is not 64 lower-case hex digits")
        if not isinstance(entry.file, str) or not entry.file:
            raise ManifestError(f"manifest entry {name}: file {entry.file!r} is not a file name")
        if not isinstance(entry.num_classes, int) or isinstance(entry.num_classes, bool):
            raise ManifestError(f"manifest entry {name}: num_classes {entry.num_classes!r} is not an integer")
        try:
            entry.validate()
        except (TypeError, ValueError) as e:
            if isinstance(e, ManifestError):
                raise
            raise ManifestError(f"malformed manifest entry {name}: {e}") from e
        return entry

    def verify_file(self, path: os.PathLike) -> str:
        """Check the file exists and matches ``sha256``; return the hash."""
        p = Path(path)
        if not p.is_file():
            raise ManifestError(f"model file missing: {p}")
        return self.verify_digest(sha256_file(p), p)

    def verify_digest(self, digest: str, path: os.PathLike) -> str:
        """Check a hash (of the bytes about to be loaded) against ``sha256``; return it."""
        if digest != self.sha256:
            raise ManifestError(
                f"model file {path} has sha256 {digest[:12]}..., manifest entry {self.name!r} expects "
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
    """The entries of one ``manifest.json``, checked one by one.

    A malformed entry is kept aside in :attr:`invalid` with its reason (naming the file and
    the entry) and is unusable; the other entries keep working. A manifest that cannot be
    read at all has no entries and its reason in :attr:`problem`.
    """

    def __init__(
        self,
        directory: os.PathLike,
        entries: dict[str, ModelEntry],
        invalid: dict[str, str] | None = None,
        problem: str = "",
        raw_invalid: dict[str, Any] | None = None,
    ):
        self.directory = Path(directory)
        self.entries = entries
        self.invalid: dict[str, str] = dict(invalid or {})
        self.problem = problem
        self._raw_invalid: dict[str, Any] = dict(raw_invalid or {})  # written back unchanged by save()

    @property
    def path(self) -> Path:
        return self.directory / MANIFEST_NAME

    @classmethod
    def load(cls, directory: os.PathLike | None = None) -> Manifest:
        directory = Path(directory) if directory else default_models_dir()
        path = directory / MANIFEST_NAME
        if not path.is_file():
            return cls(directory, {})
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return cls(directory, {}, problem=f"{path}: not valid JSON: {e}")
        models = doc.get("models", {}) if isinstance(doc, dict) else None
        if not isinstance(models, dict):
            return cls(directory, {}, problem=f'{path}: expected {{"models": {{name: entry, ...}}}}')
        entries: dict[str, ModelEntry] = {}
        invalid: dict[str, str] = {}
        raw_invalid: dict[str, Any] = {}
        for name, raw in models.items():
            try:
                if not isinstance(raw, dict):
                    raise ManifestError(f"expected an object, got {json.dumps(raw)}")
                entries[name] = ModelEntry.from_dict({**raw, "name": name})
            except ManifestError as e:
                invalid[name] = f"{path}: entry {name!r} is unusable: {e}"
                raw_invalid[name] = raw
        return cls(directory, entries, invalid, raw_invalid=raw_invalid)

    def get(self, name: str) -> ModelEntry:
        if name in self.entries:
            return self.entries[name]
        if name in self.invalid:
            raise ManifestError(self.invalid[name])
        if self.problem:
            raise ManifestError(f"no usable manifest entry {name!r}: {self.problem}")
        raise ManifestError(f"no manifest entry {name!r} in {self.path}; available: {sorted(self.entries)}")

    def path_of(self, entry: ModelEntry) -> Path:
        return self.directory / entry.file

    def put(self, entry: ModelEntry) -> None:
        entry.validate()
        self.entries[entry.name] = entry
        self.invalid.pop(entry.name, None)
        self._raw_invalid.pop(entry.name, None)

    def save(self) -> Path:
        if self.problem:
            raise ManifestError(f"not overwriting an unreadable manifest: {self.problem}")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path
        models = {k: {kk: vv for kk, vv in e.to_dict().items() if kk != "name"} for k, e in self.entries.items()}
        models.update(self._raw_invalid)
        doc = {"models": dict(sorted(models.items()))}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def make_entry(name: str, model_file: os.PathLike, fmt: str, num_classes: int, **kwargs: Any) -> ModelEntry:
    """Build an entry for a file on disk (hash and size filled in)."""
    p = Path(model_file)
    entry = ModelEntry(
        name=name,
        file=p.name,
        format=fmt,
        sha256=sha256_file(p),
        num_classes=num_classes,
        size_bytes=p.stat().st_size,
        **kwargs,
    )
    entry.validate()
    return entry
