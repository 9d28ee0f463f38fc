"""Per-op features for the latency model: from a Keras model (``ops_from_keras``) or the anchor cache.

The predictor prices ops by class (``edgecv.records.OP_CLASSES``) and dtype. The profiler produces the
same ``OpStat`` list from a ``.tflite``/``.onnx`` graph; this module produces it from the Keras builder
so that the predictor can be fitted and tested without the profiler, mirroring what the TFLite converter
deploys: BatchNorm folded into the convolution, ReLU/ReLU6 fused, explicit padding fused into the
following convolution (XNNPACK does), swish lowered to LOGISTIC + MUL, Keras' 1x1 classifier conv a
pointwise op. MACs follow ``edgecv.builders.cost`` exactly (the papers' multiply-add convention).

Anchor models (the networks of ``published_latency.csv``) are cached in ``anchor_features.json`` beside
this file, so fitting and prediction never import TensorFlow. ``tools/calibrate_devices.py
--refresh-features`` rebuilds the cache; a test checks it against a fresh build.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from edgecv.records import OpStat, ProfileResult

FEATURES_FILE = Path(__file__).with_name("anchor_features.json")

# bytes per element: (weights, bias, activations) by model dtype. float16 TFLite files store fp16
# weights and run fp32 activations on CPU; int8 models keep int32 biases.
DTYPE_BYTES = {
    "float32": (4, 4, 4),
    "float16": (2, 2, 4),
    "int8": (1, 4, 1),
    "uint8": (1, 4, 1),
    # fp16 storage and arithmetic (ncnn on fp16-capable cores): every tensor is 2 bytes. Used to
    # compare with published ncnn figures; TFLite on CPU never runs this way.
    "float16_storage": (2, 2, 2),
}

# Activations the TFLite converter fuses into the producing op (no op, no buffer).
FUSED_ACTIVATIONS = {"linear", "relu", "relu6"}
# Activations that become separate ops: name -> TFLite op types emitted.
UNFUSED_ACTIVATIONS = {"silu": ("LOGISTIC", "MUL"), "swish": ("LOGISTIC", "MUL"), "sigmoid": ("LOGISTIC",),
                       "softmax": ("SOFTMAX",), "hard_swish": ("HARD_SWISH",), "tanh": ("TANH",)}


def _check_dtype(dtype: str) -> tuple[int, int, int]:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPE_BYTES)}. Received: dtype={dtype!r}")
    return DTYPE_BYTES[dtype]


def _key(tensor) -> tuple:
    hist = tensor._keras_history
    return (hist.operation.name, hist.node_index, hist.tensor_index)


def _act_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", str(act))


def keras_op_rows(model) -> tuple[list[dict], int]:
    """The deployed op list of a Keras model as dtype-free rows, and the peak live activation elements.

    Each row: ``type, op_class, name, output_shape, macs, weight_elems, bias_elems, in_elems, out_elems``.
    The peak is TFLite-style liveness (a tensor is live from its producer to its last consumer, the
    model input included, no in-place ops) over the deployed ops, in elements.
    """
    from keras import layers as L

    from edgecv.builders.cost import count_kernel_layer, folded_producers

    folded = folded_producers(model)

    alias: dict[tuple, tuple] = {}  # fused layer output -> the buffer it really is
    sizes: dict[tuple, int] = {}  # buffer -> elements
    rows: list[dict] = []
    uses: list[tuple[list[tuple], tuple]] = []  # per op: (input buffers, output buffer)

    def buf(t) -> tuple:
        k = _key(t)
        while k in alias:
            k = alias[k]
        return k

    def emit(type_, cls, name, out_shape, inputs, macs=0, w=0, b=0, out_key=None):
        ins = [buf(t) if not isinstance(t, tuple) else t for t in inputs]
        out = out_key if out_key is not None else ("__op__", len(rows))
        n_out = math.prod(out_shape)
        sizes[out] = n_out
        rows.append({"type": type_, "op_class": cls, "name": name, "output_shape": list(out_shape),
                     "macs": int(macs), "weight_elems": int(w), "bias_elems": int(b),
                     "in_elems": int(sum(sizes[i] for i in ins)), "out_elems": int(n_out)})
        uses.append((ins, out))
        return out

    for t in model.inputs:
        sizes[_key(t)] = math.prod(int(d) for d in t.shape[1:])

    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        out_t = layer.output
        out_shape = tuple(int(d) for d in out_t.shape[1:])
        okey = _key(out_t)
        name = layer.name
        if isinstance(layer, (L.BatchNormalization, L.Dropout, L.ZeroPadding2D)) or (
            isinstance(layer, L.ReLU)
            or (isinstance(layer, L.Activation) and _act_name(layer) in FUSED_ACTIVATIONS)
        ):
            alias[okey] = buf(ins[0])  # folded (BN), identity (Dropout), fused (ReLU, padding into conv)
            continue
        k = count_kernel_layer(layer, folded)  # the builder's counter (edgecv.builders.cost)
        if k is not None:
            type_ = {"depthwise": "DEPTHWISE_CONV_2D", "fc": "FULLY_CONNECTED"}.get(k.kind, "CONV_2D")
            act = _act_name(layer)
            extra = UNFUSED_ACTIVATIONS.get(act, ()) if act not in FUSED_ACTIVATIONS else ()
            o = emit(type_, k.kind, name, out_shape, ins, macs=k.macs, w=k.weight_elems, b=k.bias_elems,
                     out_key=None if extra else okey)
            if extra:
                _emit_activation(emit, extra, name, out_shape, o, okey)
            continue
        if isinstance(layer, L.Activation):
            extra = UNFUSED_ACTIVATIONS.get(_act_name(layer), ("ACTIVATION",))
            _emit_activation(emit, extra, name, out_shape, buf(ins[0]), okey)
            continue
        if isinstance(layer, (L.Add, L.Multiply, L.Subtract)):
            type_ = {L.Add: "ADD", L.Multiply: "MUL", L.Subtract: "SUB"}[type(layer)]
            emit(type_, "elementwise", name, out_shape, ins, out_key=okey)
            continue
        if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
            emit("MEAN" if isinstance(layer, L.GlobalAveragePooling2D) else "REDUCE_MAX", "pool", name,
                 out_shape, ins, out_key=okey)
            continue
        if isinstance(layer, (L.AveragePooling2D, L.MaxPooling2D)):
            emit("AVERAGE_POOL_2D" if isinstance(layer, L.AveragePooling2D) else "MAX_POOL_2D", "pool", name,
                 out_shape, ins, out_key=okey)
            continue
        if isinstance(layer, L.Rescaling):
            o = emit("MUL", "elementwise", name, out_shape, ins)
            emit("ADD", "elementwise", name, out_shape, [o], out_key=okey)
            continue
        if isinstance(layer, L.Normalization):
            o = emit("SUB", "elementwise", name, out_shape, ins)
            emit("MUL", "elementwise", name, out_shape, [o], out_key=okey)
            continue
        # Reshape, Flatten, Concatenate, anything else: one op of class "other"
        type_ = {"Reshape": "RESHAPE", "Flatten": "RESHAPE", "Concatenate": "CONCATENATION"}.get(
            type(layer).__name__, type(layer).__name__.upper())
        emit(type_, "other", name, out_shape, ins, out_key=okey)

    # liveness: a buffer lives from its producer (-1 for model inputs) to its last consumer
    # (to the end for model outputs); the peak is the largest sum of live buffers at any op.
    n = len(uses)
    start: dict[tuple, int] = {k: -1 for k in sizes if k[0] != "__op__" and k not in {u[1] for u in uses}}
    end: dict[tuple, int] = {}
    for i, (ins, out) in enumerate(uses):
        start.setdefault(out, i)
        for k in ins:
            end[k] = max(end.get(k, i), i)
    for t in model.outputs:
        end[buf(t)] = n
    peak = 0
    for i in range(n):
        live = sum(sizes[k] for k, s in start.items() if s <= i and end.get(k, s) >= i)
        peak = max(peak, live)
    return rows, peak


def _emit_activation(emit, types, name, out_shape, src, okey):
    """Emit the ops of an unfused activation. silu/swish: LOGISTIC(x) then MUL(x, logistic)."""
    if types == ("LOGISTIC", "MUL"):
        s = emit("LOGISTIC", "elementwise", name, out_shape, [src])
        emit("MUL", "elementwise", name, out_shape, [src, s], out_key=okey)
        return
    o = src
    for j, t in enumerate(types):
        o = emit(t, "elementwise", name, out_shape, [o], out_key=okey if j == len(types) - 1 else None)


def rows_to_ops(rows: list[dict], dtype: str) -> list[OpStat]:
    """Dtype-free rows -> ``OpStat`` with bytes for ``dtype`` (float32, float16, int8)."""
    wb, bb, ab = _check_dtype(dtype)
    return [OpStat(index=i, type=r["type"], op_class=r["op_class"], dtype=dtype,
                   output_shape=tuple(r["output_shape"]), macs=r["macs"],
                   params=r["weight_elems"] + r["bias_elems"],
                   weight_bytes=r["weight_elems"] * wb + r["bias_elems"] * bb,
                   activation_bytes=r["out_elems"] * ab, input_bytes=r["in_elems"] * ab, name=r["name"])
            for i, r in enumerate(rows)]


def ops_from_keras(model, dtype: str = "float32") -> list[OpStat]:
    """The deployed ops of a Keras model, as the profiler would list them for a TFLite file of ``dtype``."""
    _check_dtype(dtype)
    rows, _ = keras_op_rows(model)
    return rows_to_ops(rows, dtype)


def static_from_rows(name: str, rows: list[dict], peak_elems: int, dtype: str) -> ProfileResult:
    """A static ``ProfileResult`` (what the profiler's graph analysis returns) from op rows."""
    ops = rows_to_ops(rows, dtype)
    _, _, ab = DTYPE_BYTES[dtype]
    return ProfileResult(model=name, format="keras", precision=dtype, mode="static", device="none",
                         macs=sum(o.macs for o in ops), params=sum(o.params for o in ops),
                         weights_bytes=sum(o.weight_bytes for o in ops), file_bytes=0,
                         peak_activation_bytes=peak_elems * ab, ops=ops)


def static_from_keras(model, dtype: str = "float32") -> ProfileResult:
    _check_dtype(dtype)
    rows, peak = keras_op_rows(model)
    return static_from_rows(model.name, rows, peak, dtype)


# --- anchor models --------------------------------------------------------------------------------

def anchor_model_name(family: str, width: float | str, resolution: int | str) -> str:
    """Registry name of a model named in a measurements CSV by family/width/resolution."""
    family = family.strip().lower()
    if family in ("mobilenet_v1", "mobilenet_v2"):
        return f"{family}_{float(width):.2f}_{int(resolution)}"
    if family in ("efficientnet", "efficientnet_lite"):
        variant = str(width).strip()
        if not variant.startswith(("b", "lite")):
            raise ValueError(f"{family}: give the variant (b0, lite0) in the width column. Received: {width!r}")
        return f"efficientnet_{variant}"
    raise ValueError(f"unknown model family {family!r} (expected mobilenet_v1, mobilenet_v2, efficientnet)")


@lru_cache(maxsize=1)
def _cache() -> dict:
    if not FEATURES_FILE.is_file():
        return {}
    return json.loads(FEATURES_FILE.read_text())


def cached_models() -> list[str]:
    return sorted(_cache().get("models", {}))


def cached_entries() -> dict[str, dict]:
    """The cached feature entries (model name -> entry), a copy."""
    return dict(_cache().get("models", {}))


def anchor_static(model_name: str, dtype: str, build_missing: bool = True) -> ProfileResult:
    """Static analysis of an anchor model: from the JSON cache, or built with Keras if missing."""
    entry = _cache().get("models", {}).get(model_name)
    if entry is None:
        if not build_missing:
            raise KeyError(f"{model_name!r} is not in {FEATURES_FILE.name}; run tools/calibrate_devices.py "
                           "--refresh-features")
        entry = build_entry(model_name)
    return static_from_rows(model_name, [dict(zip(entry["columns"], r)) for r in entry["ops"]],
                            entry["peak_activation_elems"], dtype)


COLUMNS = ("type", "op_class", "name", "output_shape", "macs", "weight_elems", "bias_elems", "in_elems", "out_elems")


def build_entry(model_name: str) -> dict:
    """Build ``model_name`` with the Keras builder and return its cache entry (imports TensorFlow): the deployed
    op rows and the builder's cost pass (``edgecv.builders.cost.model_cost``: input shape, MACs, parameters with
    and without BatchNorm), which ``edgecv models`` lists without building anything."""
    from edgecv.builders.cost import model_cost
    from edgecv.builders.registry import create_model

    model = create_model(model_name)
    rows, peak = keras_op_rows(model)
    cost = model_cost(model).to_dict()
    cost.pop("name", None)
    return {"columns": list(COLUMNS), "cost": cost, "ops": [[r[c] for c in COLUMNS] for r in rows],
            "macs": sum(r["macs"] for r in rows), "peak_activation_elems": peak}


def write_features(path: Path, note: str, models: dict) -> None:
    """Write a features cache (``edgecv.anchor_features/v1``) atomically, one op per line (small, diffable)."""
    from edgecv.fileio import write_text_atomic

    lines = ["{", '  "schema": "edgecv.anchor_features/v1",', f'  "note": {json.dumps(note)},', '  "models": {']
    names = list(models)
    for i, name in enumerate(names):
        e = models[name]
        lines.append(f"    {json.dumps(name)}: {{")
        lines.append(f'      "columns": {json.dumps(e["columns"])},')
        if "cost" in e:
            lines.append(f'      "cost": {json.dumps(e["cost"])},')
        lines.append(f'      "macs": {e["macs"]}, "peak_activation_elems": {e["peak_activation_elems"]},')
        lines.append('      "ops": [')
        lines += [f"        {json.dumps(r)}" + ("," if j < len(e["ops"]) - 1 else "") for j, r in enumerate(e["ops"])]
        lines.append("      ]")
        lines.append("    }" + ("," if i < len(names) - 1 else ""))
    lines += ["  }", "}"]
    write_text_atomic(path, "\n".join(lines) + "\n")
    _cache.cache_clear()


ANCHOR_NOTE = ("Deployed ops of the anchor models from the Keras builder (edgecv.devices.features). "
               "Regenerate: python tools/calibrate_devices.py --refresh-features")


def refresh_cache(model_names: list[str], path: Path = FEATURES_FILE) -> dict:
    """Rebuild the anchor cache for ``model_names`` and write it atomically."""
    data = {"schema": "edgecv.anchor_features/v1", "note": ANCHOR_NOTE,
            "models": {name: build_entry(name) for name in sorted(set(model_names))}}
    write_features(path, ANCHOR_NOTE, data["models"])
    return data
