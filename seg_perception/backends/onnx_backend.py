"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

import numpy as np

from ._shapes import fill_generic_entry
from .base import Backend, BackendError, register_runtime

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(float16)": "float16",
}


class OnnxBackend(Backend):
    runtime = "onnx"

    def _load(self, model_bytes: bytes) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError("onnxruntime not installed: pip install onnxruntime") from e
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.num_threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not self.spin_wait:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sess = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        inp, out = self._sess.get_inputs(), self._sess.get_outputs()
        if len(inp) != 1 or len(out) != 1:
            raise BackendError(f"{self.path}: expected 1 input and 1 output, got {len(inp)} and {len(out)}")
        self._in_name, self._out_name = inp[0].name, out[0].name
        dtype = _ORT_TYPES.get(inp[0].type, "float32")
        fill_generic_entry(self.entry, inp[0].shape, out[0].shape, dtype)
        self._check_shapes(inp[0].shape, out[0].shape)
        self.input_dtype = np.dtype(dtype)
        self.output_dtype = np.dtype(_ORT_TYPES.get(out[0].type, "float32"))
        self.input_quant = None
        self.output_quant = None

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([self._out_name], {self._in_name: x})[0]


register_runtime("onnx", OnnxBackend)
