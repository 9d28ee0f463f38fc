"""Models converted by the reference converters, for checking static analysis against the builder's cost pass.

Used by ``tests/profiling/test_profiling_static.py`` on representative models and by ``tools/check_counts.py`` on
every registered model.
"""

from __future__ import annotations

import os

from helpers.weights import randomize_weights


def convert_both(name: str, out_dir) -> tuple[object, str, str]:
    """Build ``name``, give it trained-looking weights, write <name>.tflite and <name>.onnx; return the cost.

    The converters are called directly (``tf.lite.TFLiteConverter.from_keras_model`` and tf2onnx at opset 13),
    not through edgecv, so the graphs are independent of edgecv's conversion code.
    """
    import tensorflow as tf
    import tf2onnx

    from edgecv.builders.cost import model_cost
    from edgecv.builders.registry import create_model

    model = create_model(name)
    randomize_weights(model)
    cost = model_cost(model)
    tfl = os.path.join(out_dir, f"{name}.tflite")
    onx = os.path.join(out_dir, f"{name}.onnx")
    with open(tfl, "wb") as fh:
        fh.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    spec = (tf.TensorSpec((1,) + tuple(cost.input_shape), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=onx)
    return cost, tfl, onx
