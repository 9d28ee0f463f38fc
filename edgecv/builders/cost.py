"""Analytic cost pass over a built Keras model: MACs, parameters and activation sizes per layer.

MACs are counted as the MobileNet and EfficientNet papers count multiply-adds: convolutions
(``k*k*cin/groups*cout*Hout*Wout``), depthwise convolutions (``k*k*cin*mult*Hout*Wout``) and fully
connected layers (``in*out``); element-wise ops, pooling and activations count no MACs.
``params_deployed`` is what a converter ships: BatchNorm folded into the preceding convolution (which
gains a bias of ``cout`` and loses the BatchNorm's four vectors); preprocessing layers count nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerCost:
    name: str
    type: str
    output_shape: tuple[int, ...]
    macs: int
    params: int
    params_deployed: int
    activation_elems: int


@dataclass(frozen=True)
class ModelCost:
    name: str
    input_shape: tuple[int, ...]
    macs: int
    params: int  # Keras count_params(), BatchNorm included
    params_deployed: int  # BatchNorm folded into the convolutions
    activation_elems_max: int  # largest single layer output (elements)
    layers: tuple[LayerCost, ...] = field(repr=False, default=())

    def to_dict(self, per_layer: bool = False) -> dict:
        d = {"name": self.name, "input_shape": list(self.input_shape), "macs": self.macs,
             "params": self.params, "params_deployed": self.params_deployed,
             "activation_elems_max": self.activation_elems_max}
        if per_layer:
            d["layers"] = [vars(lc) for lc in self.layers]
        return d


def _shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape[1:])


def _producer(tensor):
    hist = getattr(tensor, "_keras_history", None)
    return hist.operation if hist is not None else None


def model_cost(model) -> ModelCost:
    """Walk ``model``'s layers and count MACs, parameters and activation sizes."""
    from keras import layers as L

    folded_into: set[str] = set()  # convs that gain a bias from a following BatchNorm
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            prod = _producer(layer.input)
            if isinstance(prod, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
                folded_into.add(prod.name)

    rows = []
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        out = _shape(layer.output)
        hw = math.prod(out[:-1]) if len(out) > 1 else 1
        macs = 0
        deployed = 0
        if isinstance(layer, L.DepthwiseConv2D):
            k = layer.kernel.shape  # (kh, kw, cin, mult)
            macs = math.prod(k) * hw
        elif isinstance(layer, L.Conv2D):
            k = layer.kernel.shape  # (kh, kw, cin/groups, cout)
            macs = math.prod(k) * hw
        elif isinstance(layer, L.Dense):
            macs = math.prod(layer.kernel.shape) * hw
        if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
            cout = int(layer.kernel.shape[-1]) if not isinstance(layer, L.DepthwiseConv2D) else (
                int(layer.kernel.shape[-2] * layer.kernel.shape[-1]))
            has_bias = bool(getattr(layer, "use_bias", False)) or layer.name in folded_into
            deployed = math.prod(layer.kernel.shape) + (cout if has_bias else 0)
        rows.append(LayerCost(name=layer.name, type=type(layer).__name__, output_shape=out, macs=int(macs),
                              params=int(layer.count_params()), params_deployed=int(deployed),
                              activation_elems=int(math.prod(out))))
    return ModelCost(
        name=model.name,
        input_shape=_shape(model.inputs[0]),
        macs=sum(r.macs for r in rows),
        params=int(model.count_params()),
        params_deployed=sum(r.params_deployed for r in rows),
        activation_elems_max=max((r.activation_elems for r in rows), default=0),
        layers=tuple(rows),
    )
