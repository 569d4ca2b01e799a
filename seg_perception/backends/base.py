"""Backend interface and registry.

A backend turns a preprocessed model input into per-pixel class scores. Which
file it runs and how the tensors look comes from the model manifest
(:mod:`seg_perception.manifest`), so preprocessing follows the model, not code.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..manifest import Manifest, ManifestError, ModelEntry

LOG = logging.getLogger(__name__)

#: Larger model files are refused before reading (the shipped ones are under 3 MB; a wrong
#: path to a multi-GB file must not stall the node while it is read and hashed).
MAX_MODEL_BYTES = 512 * 1024 * 1024


class BackendError(RuntimeError):
    """A backend cannot be created or cannot run; the text says which file and why."""


@dataclass(frozen=True)
class BackendSpec:
    """A registry entry: the runtime and, for shipped models, the manifest entry to use."""

    name: str
    runtime: str  # "tflite" | "onnx"
    entry: str | None  # manifest entry name; None = generic (needs model_path)
    description: str
    # flip_average "auto": average with the mirror image's scores, where that was measured to pay
    # on held-out capture runs for the shipped model (README: flip averaging)
    flip_average: bool = False


BACKENDS: dict[str, BackendSpec] = {
    s.name: s
    for s in (
        BackendSpec("tflite_int8", "tflite", "tflite_int8", "DeepLabV3+ MobileNetV2, full int8 TFLite (default)"),
        BackendSpec("tflite_fp16", "tflite", "tflite_fp16", "DeepLabV3+ MobileNetV2, fp16-weight TFLite"),
        BackendSpec("tflite_dynamic", "tflite", "tflite_dynamic", "DeepLabV3+ MobileNetV2, dynamic-range int8 TFLite"),
        BackendSpec("tflite_fp32", "tflite", "tflite_fp32", "DeepLabV3+ MobileNetV2, fp32 TFLite"),
        BackendSpec(
            "onnx_fcn8s_pruned",
            "onnx",
            "onnx_fcn8s_pruned",
            "filter-pruned FCN8s (VGG16 design), ONNX Runtime",
            flip_average=True,
        ),
        BackendSpec("espnet", "onnx", "espnet", "ESPNet, ONNX Runtime"),
        BackendSpec("onnx", "onnx", None, "any ONNX model given by model_path"),
        BackendSpec("tflite", "tflite", None, "any TFLite model given by model_path"),
    )
}


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


FLIP_MODES = ("auto", "on", "off")


def flip_average_for(mode: str, backend: str) -> bool:
    """Whether frames run twice (the image and its mirror, scores averaged): ``on``, ``off``, or
    ``auto``: the backend's registry entry says (on only where it paid on held-out capture runs)."""
    if mode not in FLIP_MODES:
        raise ValueError(f"flip_average {mode!r} is not one of {list(FLIP_MODES)}")
    if mode == "auto":
        spec = BACKENDS.get(backend)
        return bool(spec and spec.flip_average)
    return mode == "on"


class Backend:
    """Runs one model. Subclasses implement :meth:`_load` and :meth:`_run`."""

    runtime = ""
    # what _load reads from the file
    input_dtype: np.dtype
    output_dtype: np.dtype
    input_quant: tuple[float, int] | None  # (scale, zero point) of an integer input tensor, else None
    output_quant: tuple[float, int] | None

    def __init__(
        self,
        name: str,
        entry: ModelEntry,
        path: Path,
        model_bytes: bytes,
        sha256: str,
        num_threads: int = 2,
        spin_wait: bool = True,
    ):
        """``model_bytes`` are the file's content as read once; ``sha256`` is their hash: the
        runtime is built from exactly the bytes that were hashed (a file replaced meanwhile
        cannot be loaded under another file's hash)."""
        self.name = name
        self.entry = entry
        self.path = Path(path)
        self.num_threads = int(num_threads)
        # Worker threads busy-wait for the next run (ONNX Runtime's default: lowest latency for
        # one model alone). Off where several models take turns on the same cores.
        self.spin_wait = bool(spin_wait)
        self.sha256 = sha256
        #: where the tensor layout and class set come from: "manifest", "sidecar" or "file" (shapes only)
        self.entry_source = "manifest"
        self._load(model_bytes)

    # --- to implement -------------------------------------------------------------
    def _load(self, model_bytes: bytes) -> None:
        raise NotImplementedError

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Model input tensor (manifest layout and dtype) -> raw output tensor."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------
    @property
    def input_hw(self) -> tuple[int, int]:
        return self.entry.input.height, self.entry.input.width

    @property
    def num_classes(self) -> int:
        return self.entry.num_classes

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed input -> scores (H, W, C) float32 or int8/uint8 (monotonic in the logits)."""
        out = self._run(x)
        out = out[0]
        if self.entry.output.layout == "NCHW":
            out = np.moveaxis(out, 0, -1)
        return out

    def _check_shapes(self, in_shape, out_shape) -> None:
        e = self.entry
        h, w = e.input.height, e.input.width
        want_in = (1, h, w, 3) if e.input.layout == "NHWC" else (1, 3, h, w)
        # symbolic dims (ONNX 'batch') are wildcards
        dims = [static_dim(v) for v in in_shape]
        got = tuple(w_ if d is None else d for d, w_ in zip(dims, want_in, strict=False))
        if len(in_shape) != 4 or got != want_in:
            raise BackendError(f"{self.path}: input shape {tuple(in_shape)} != manifest {want_in} ({e.name})")
        c_axis = 3 if e.output.layout == "NHWC" else 1
        if len(out_shape) != 4 or str(out_shape[c_axis]) != str(e.num_classes):
            raise BackendError(
                f"{self.path}: output shape {tuple(out_shape)} has no {e.num_classes}-class axis "
                f"({e.output.layout}) as manifest entry {e.name!r} says"
            )
        hw = tuple(out_shape[1:3]) if e.output.layout == "NHWC" else tuple(out_shape[2:4])
        self.output_hw = tuple(static_dim(v) for v in hw)  # None: symbolic (ONNX)
        if None not in self.output_hw and e.output.height and self.output_hw != (e.output.height, e.output.width):
            raise BackendError(
                f"{self.path}: output grid {self.output_hw} != manifest {(e.output.height, e.output.width)} ({e.name})"
            )


_RUNTIMES: dict[str, Callable[..., Backend]] = {}


def register_runtime(name: str, factory: Callable[..., Backend]) -> None:
    _RUNTIMES[name] = factory


def _runtime(name: str) -> Callable[..., Backend]:
    if not _RUNTIMES:
        from . import onnx_backend, tflite_backend  # noqa: F401 - registers themselves
    return _RUNTIMES[name]


def read_model_bytes(path: Path, what: str = "model file", limit: int = MAX_MODEL_BYTES) -> bytes:
    """The whole file, read once, refused before reading when over ``limit`` bytes."""
    if not path.is_file():
        raise BackendError(f"{what} {path} does not exist")
    size = path.stat().st_size
    too_big = (
        f"{what} {path} is larger than the {limit / 2**20:.0f} MiB limit for a model "
        f"(the shipped models are under 3 MB); not loading it"
    )
    if size > limit:
        raise BackendError(f"{too_big}: {size / 2**20:.0f} MiB")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew after stat
        raise BackendError(too_big)
    return data


def static_dim(d: object) -> int | None:
    """A declared tensor dimension as an int; None when symbolic (ONNX names such as 'batch', or None).

    The one reading of shapes for both runtimes: TFLite gives numpy ints, ONNX Runtime ints or strings.
    """
    text = str(d)
    return int(text) if text.lstrip("-").isdigit() else None


def entry_sidecar_path(path: Path) -> Path:
    """Where a model file's own manifest entry lives when it has one: ``<file>.json`` beside it."""
    return path.with_name(path.name + ".json")


def generic_entry(path: Path, runtime: str, digest: str) -> ModelEntry:
    """Manifest entry for a model file without one: shapes are read from the file.

    A ``<file>.json`` beside the file (:func:`entry_sidecar_path`, same schema as a manifest entry)
    is used when present.
    """
    side = entry_sidecar_path(path)
    if side.is_file():
        import json

        try:
            d = json.loads(side.read_text(encoding="utf-8"))
        except ValueError as e:
            raise BackendError(f"sidecar {side}: not valid JSON: {e}") from e
        if not isinstance(d, dict):
            raise BackendError(f"sidecar {side}: expected a JSON object like a manifest entry")
        d.setdefault("name", path.stem)
        d["file"] = path.name
        d.setdefault("sha256", digest)
        entry = ModelEntry.from_dict(d)
        entry.verify_digest(digest, path)
        return entry
    return ModelEntry(name=path.stem, file=path.name, format=runtime, sha256=digest, num_classes=0)


def _manifest_entry_for(spec: BackendSpec, digest: str, manifest: Manifest | None) -> ModelEntry | None:
    """The backend's manifest entry when a model_path has its hash (a broken manifest only warns)."""
    if not spec.entry:
        return None
    try:
        manifest = manifest or Manifest.load()
    except OSError as e:
        LOG.warning("model manifest not readable (%s); treating the model_path as a generic model", e)
        return None
    entry = manifest.entries.get(spec.entry)
    return entry if entry is not None and entry.sha256 == digest else None


@dataclass
class FoundModel:
    """A backend's model file, read once, and the entry that describes it."""

    entry: ModelEntry
    path: Path
    data: bytes
    digest: str
    source: str  # "manifest", "sidecar" or "file" (shapes only, read when the runtime opens it)


def find_model(name: str, model_path: str = "", manifest: Manifest | None = None) -> FoundModel:
    """The file a backend would run and its entry, without opening a runtime.

    Shipped backends use their manifest entry (sha256 checked). ``model_path`` overrides the file:
    its manifest entry when its hash matches, else its ``<file>.json`` sidecar, else a generic
    entry whose shapes the runtime reads. Raises :class:`BackendError` naming the file and reason.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; valid: {list(BACKENDS)}")
    spec = BACKENDS[name]
    with _as_backend_error(name):
        if model_path:
            path = Path(model_path).expanduser()
            data = read_model_bytes(path, "model_path")
            digest = hashlib.sha256(data).hexdigest()
            entry, source = _manifest_entry_for(spec, digest, manifest), "manifest"
            if entry is None:
                entry = generic_entry(path, spec.runtime, digest)
                source = "file" if entry.num_classes == 0 else "sidecar"
                LOG.warning("backend %s: using model file outside the manifest: %s (sha256 %s)", name, path, digest)
        else:
            if spec.entry is None:
                raise BackendError(f"backend {name!r} needs model_path (a .{spec.runtime} file)")
            manifest, source = manifest or Manifest.load(), "manifest"
            entry = manifest.get(spec.entry)
            path = manifest.path_of(entry)
            if not path.is_file():
                raise BackendError(f"model file missing: {path} (manifest entry {entry.name!r})")
            data = read_model_bytes(path)
            digest = entry.verify_digest(hashlib.sha256(data).hexdigest(), path)
        if entry.format != spec.runtime:
            raise BackendError(f"{path}: manifest format {entry.format!r} but backend {name!r} runs {spec.runtime}")
        return FoundModel(entry, path, data, digest, source)


def create_backend(
    name: str, model_path: str = "", num_threads: int = 2, manifest: Manifest | None = None, spin_wait: bool = True
) -> Backend:
    """Build a backend by registry name (:func:`find_model`, then its runtime on the bytes it read).

    Shipped backends verify their manifest entry (sha256, shapes, classes); a ``model_path`` is
    checked against the backend's manifest entry if its hash matches, else it is treated as a
    generic model and its hash is logged. The file is read once: its bytes are hashed and loaded.
    """
    found = find_model(name, model_path, manifest)
    spec = BACKENDS[name]
    with _as_backend_error(name):
        backend = _runtime(spec.runtime)(
            name, found.entry, found.path, found.data, found.digest, num_threads, spin_wait
        )
        backend.entry_source = found.source
        return backend


def open_backend(entry: ModelEntry, path: os.PathLike, num_threads: int = 2, spin_wait: bool = True) -> Backend:
    """The runtime of ``entry.format`` on ``path``, checked against ``entry`` (sha256, shapes, classes).

    What :func:`create_backend` ends with once it has found the entry. Tools that hold an entry
    of their own (the export checks of a file just written, the report over a models folder)
    call it directly, so they run a file exactly as the node does.
    """
    with _as_backend_error(entry.name):
        path = Path(path)
        data = read_model_bytes(path)
        digest = entry.verify_digest(hashlib.sha256(data).hexdigest(), path)
        return _runtime(entry.format)(entry.name, entry, path, data, digest, num_threads, spin_wait)


@contextmanager
def _as_backend_error(name: str) -> Iterator[None]:
    """Every failure to load a model as a :class:`BackendError` naming the file and reason."""
    try:
        yield
    except ManifestError as e:
        raise BackendError(str(e)) from e
    except BackendError:
        raise
    except Exception as e:  # runtime libraries raise their own types on corrupt files
        raise BackendError(f"backend {name!r}: cannot load model: {type(e).__name__}: {e}") from e
