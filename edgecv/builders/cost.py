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


@dataclass(frozen=True)
class KernelCount:
    """What one Conv2D / DepthwiseConv2D / Dense layer costs once deployed."""

    kind: str  # "depthwise", "conv" (k x k, k > 1), "pointwise" (1x1) or "fc"
    macs: int
    weight_elems: int
    bias_elems: int  # cout when the layer has a bias or a BatchNorm folds into it, else 0


def folded_producers(model) -> set[str]:
    """Names of the Conv2D / DepthwiseConv2D / Dense layers that a following BatchNormalization folds into
    (each gains a bias of ``cout``)."""
    from keras import layers as L

    out = set()
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            prod = _producer(layer.input)
            if isinstance(prod, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
                out.add(prod.name)
    return out


def count_kernel_layer(layer, folded: set[str]) -> KernelCount | None:
    """MACs and deployed weights of a Conv2D / DepthwiseConv2D / Dense layer (None for any other layer):
    MACs = kernel elements x output positions, the papers' count; ``folded``: :func:`folded_producers`."""
    from keras import layers as L

    if not isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
        return None
    kshape = tuple(int(d) for d in layer.kernel.shape)  # conv (kh, kw, cin/groups, cout); dw (kh, kw, cin, mult)
    out = tuple(int(d) for d in layer.output.shape[1:])
    hw = math.prod(out[:-1]) if len(out) > 1 else 1
    if isinstance(layer, L.DepthwiseConv2D):
        kind, cout = "depthwise", kshape[-2] * kshape[-1]
    elif isinstance(layer, L.Dense):
        kind, cout = "fc", kshape[-1]
    else:
        kind, cout = ("pointwise" if kshape[:2] == (1, 1) else "conv"), kshape[-1]
    has_bias = bool(getattr(layer, "use_bias", False)) or layer.name in folded
    return KernelCount(kind=kind, macs=math.prod(kshape) * hw, weight_elems=math.prod(kshape),
                       bias_elems=cout if has_bias else 0)


def model_cost(model) -> ModelCost:
    """Walk ``model``'s layers and count MACs, parameters and activation sizes."""
    from keras import layers as L

    folded_into = folded_producers(model)
    rows = []
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        out = _shape(layer.output)
        k = count_kernel_layer(layer, folded_into)
        rows.append(LayerCost(name=layer.name, type=type(layer).__name__, output_shape=out,
                              macs=k.macs if k else 0, params=int(layer.count_params()),
                              params_deployed=k.weight_elems + k.bias_elems if k else 0,
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
