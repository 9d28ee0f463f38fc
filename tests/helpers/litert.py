"""A .tflite run in LiteRT by the tests themselves: an evaluation loop independent of edgecv's runner
(``edgecv.conversion.verify.run_artifact``)."""

from __future__ import annotations

import numpy as np


def run_tflite(path, x: np.ndarray) -> np.ndarray:
    """Float32 outputs of the .tflite at ``path`` for each sample of ``x`` (the model's float input), one sample at
    a time: an integer input is quantized with the tensor's own scale and zero point (clipped to its dtype's
    range) and an integer output dequantized with its own."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for s in x:
        v = s[None]
        if i["dtype"] != np.float32:
            sc, zp = i["quantization"]
            v = np.clip(np.round(v / sc + zp), np.iinfo(i["dtype"]).min, np.iinfo(i["dtype"]).max)
        it.set_tensor(i["index"], v.astype(i["dtype"]))
        it.invoke()
        y = it.get_tensor(o["index"]).astype(np.float32)
        if o["dtype"] != np.float32:
            sc, zp = o["quantization"]
            y = (y - zp) * sc
        ys.append(y[0])
    return np.stack(ys)
