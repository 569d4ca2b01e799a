"""TFLite backend: ai_edge_litert, falling back to tflite_runtime (old, slow on int8)."""

from __future__ import annotations

import logging

import numpy as np

from ._shapes import fill_generic_entry
from .base import Backend, BackendError, register_runtime

LOG = logging.getLogger(__name__)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]

            LOG.warning("ai_edge_litert not installed; using tflite_runtime (int8 models run much slower)")
            return Interpreter
        except ImportError as e:
            raise BackendError("no TFLite runtime: pip install ai-edge-litert") from e


class TFLiteBackend(Backend):
    runtime = "tflite"

    def _load(self, model_bytes: bytes) -> None:
        self._model_bytes = model_bytes  # the interpreter reads the model from this buffer while it lives
        self._it = _interpreter_class()(model_content=model_bytes, num_threads=self.num_threads)
        self._it.allocate_tensors()
        inp = self._it.get_input_details()
        out = self._it.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise BackendError(f"{self.path}: expected 1 input and 1 output, got {len(inp)} and {len(out)}")
        self._in, self._out = inp[0], out[0]
        fill_generic_entry(self.entry, self._in["shape"], self._out["shape"], np.dtype(self._in["dtype"]).name)
        self._check_shapes(self._in["shape"], self._out["shape"])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        scale, zero = self._in.get("quantization", (0.0, 0))
        self.input_quant = (float(scale), int(zero)) if scale else None
        oscale, ozero = self._out.get("quantization", (0.0, 0))
        self.output_quant = (float(oscale), int(ozero)) if oscale else None

    def _run(self, x: np.ndarray) -> np.ndarray:
        self._it.set_tensor(self._in["index"], x)
        self._it.invoke()
        return self._it.get_tensor(self._out["index"])


register_runtime("tflite", TFLiteBackend)
