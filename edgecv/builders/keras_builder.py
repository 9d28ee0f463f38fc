"""The one generic Keras builder: walks a family's stage table and emits layers.

Layer names and weight shapes match keras.applications (MobileNet, MobileNetV2, EfficientNetB0..B7),
so weights saved from those models load here by name. Importing this module imports Keras.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgecv.native import import_tensorflow

import_tensorflow()  # quietly, before Keras imports it with its start-up chatter

import keras  # noqa: E402
from keras import layers  # noqa: E402

from edgecv.builders.arch import Family, Stage, scale_channels, scale_repeats  # noqa: E402
from edgecv.builders.registry import ModelConfig  # noqa: E402
from edgecv.errors import EdgecvError, one_line  # noqa: E402

def correct_pad(x, kernel: int):
    """Zero padding for a stride-2 'valid' conv that matches TF 'same' (keras imagenet_utils)."""
    size = x.shape[1:3]
    adjust = (1, 1) if size[0] is None else (1 - size[0] % 2, 1 - size[1] % 2)
    c = kernel // 2
    return ((c - adjust[0], c), (c - adjust[1], c))


class _Builder:
    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.fam: Family = cfg.spec
        self.bn_kw = dict(axis=-1, epsilon=self.fam.bn_epsilon, momentum=self.fam.bn_momentum)
        init = self.fam.initializers  # [family.initializers]; None: Keras' defaults
        self.conv_kw = {"kernel_initializer": init.conv.keras()} if init.conv else {}
        self.dw_kw = {"depthwise_initializer": init.conv.keras()} if init.conv else {}
        self.dense_kw = {"kernel_initializer": init.dense.keras()} if init.dense else {}
        self.dwsep_id = 0
        self.ir_id = 0
        self.mb_stage = 0
        self.mb_block = 0
        self.mb_total = sum(scale_repeats(s, cfg.depth) for s in self.fam.stages if s.block == "mbconv")

    def act(self, kind: str, name: str):
        if kind == "relu6":
            return layers.ReLU(6.0, name=name)
        if kind == "relu":
            return layers.ReLU(name=name)
        return layers.Activation(kind, name=name)

    def bn(self, name: str):
        return layers.BatchNormalization(name=name, **self.bn_kw)

    # --- blocks -----------------------------------------------------------------------------------
    def conv(self, x, st: Stage, filters: int):
        n = st.names
        if "pad" in n and st.stride == 2:
            x = layers.ZeroPadding2D(padding=correct_pad(x, st.kernel), name=n["pad"])(x)
            padding = "valid"
        else:
            padding = "same"
        x = layers.Conv2D(filters, st.kernel, strides=st.stride, padding=padding, use_bias=False,
                          name=n.get("conv"), **self.conv_kw)(x)
        x = self.bn(n.get("bn"))(x)
        return self.act(st.activation, n.get("act"))(x)

    def dwsep(self, x, st: Stage, filters: int, stride: int):
        """MobileNetV1 depthwise-separable block (keras mobilenet._depthwise_conv_block)."""
        self.dwsep_id += 1
        i = self.dwsep_id
        if stride != 1:
            x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{i}")(x)
        x = layers.DepthwiseConv2D(st.kernel, padding="same" if stride == 1 else "valid",
                                   depth_multiplier=self.cfg.depth_multiplier, strides=stride,
                                   use_bias=False, name=f"conv_dw_{i}", **self.dw_kw)(x)
        x = self.bn(f"conv_dw_{i}_bn")(x)
        x = self.act(st.activation, f"conv_dw_{i}_relu")(x)
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"conv_pw_{i}", **self.conv_kw)(x)
        x = self.bn(f"conv_pw_{i}_bn")(x)
        return self.act(st.activation, f"conv_pw_{i}_relu")(x)

    def inverted_residual(self, x, st: Stage, filters: int, stride: int):
        """MobileNetV2 inverted residual (keras mobilenet_v2._inverted_res_block)."""
        i = self.ir_id
        self.ir_id += 1
        inputs = x
        cin = x.shape[-1]
        prefix = f"block_{i}_" if i else "expanded_conv_"
        if st.expansion != 1:
            x = layers.Conv2D(st.expansion * cin, 1, padding="same", use_bias=False, name=prefix + "expand",
                              **self.conv_kw)(x)
            x = self.bn(prefix + "expand_BN")(x)
            x = self.act(st.activation, prefix + "expand_relu")(x)
        if stride == 2:
            x = layers.ZeroPadding2D(padding=correct_pad(x, st.kernel), name=prefix + "pad")(x)
        x = layers.DepthwiseConv2D(st.kernel, strides=stride, use_bias=False,
                                   padding="same" if stride == 1 else "valid", name=prefix + "depthwise",
                                   **self.dw_kw)(x)
        x = self.bn(prefix + "depthwise_BN")(x)
        x = self.act(st.activation, prefix + "depthwise_relu")(x)
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=prefix + "project", **self.conv_kw)(x)
        x = self.bn(prefix + "project_BN")(x)
        if cin == filters and stride == 1:
            return layers.Add(name=prefix + "add")([inputs, x])
        return x

    def mbconv(self, x, st: Stage, filters: int, stride: int, j: int):
        """EfficientNet MBConv with optional squeeze-excite (keras efficientnet.block)."""
        name = f"block{self.mb_stage}{chr(97 + j)}_"
        drop = self.fam.drop_connect_rate * self.mb_block / self.mb_total
        self.mb_block += 1
        inputs = x
        cin = x.shape[-1]
        mid = cin * st.expansion
        if st.expansion != 1:
            x = layers.Conv2D(mid, 1, padding="same", use_bias=False, name=name + "expand_conv", **self.conv_kw)(x)
            x = self.bn(name + "expand_bn")(x)
            x = self.act(st.activation, name + "expand_activation")(x)
        if stride == 2:
            x = layers.ZeroPadding2D(padding=correct_pad(x, st.kernel), name=name + "dwconv_pad")(x)
        x = layers.DepthwiseConv2D(st.kernel, strides=stride, padding="same" if stride == 1 else "valid",
                                   use_bias=False, name=name + "dwconv", **self.dw_kw)(x)
        x = self.bn(name + "bn")(x)
        x = self.act(st.activation, name + "activation")(x)
        if 0 < st.se_ratio <= 1:
            se_filters = max(1, int(cin * st.se_ratio))
            se = layers.GlobalAveragePooling2D(name=name + "se_squeeze")(x)
            se = layers.Reshape((1, 1, mid), name=name + "se_reshape")(se)
            se = layers.Conv2D(se_filters, 1, padding="same", activation=st.activation if st.activation != "relu6"
                               else "relu6", name=name + "se_reduce", **self.conv_kw)(se)
            se = layers.Conv2D(mid, 1, padding="same", activation="sigmoid", name=name + "se_expand",
                               **self.conv_kw)(se)
            x = layers.multiply([x, se], name=name + "se_excite")
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=name + "project_conv", **self.conv_kw)(x)
        x = self.bn(name + "project_bn")(x)
        if stride == 1 and cin == filters:
            if drop > 0:
                x = layers.Dropout(drop, noise_shape=(None, 1, 1, 1), name=name + "drop")(x)
            x = layers.add([x, inputs], name=name + "add")
        return x

    # --- whole model ------------------------------------------------------------------------------
    def build(self):
        cfg, fam = self.cfg, self.fam
        inputs = keras.Input(shape=cfg.input_shape)
        x = inputs
        if fam.preprocessing.in_model:
            # keras.applications.EfficientNet: raw pixels in, Rescaling + Normalization inside.
            x = layers.Rescaling(1.0 / 255.0)(x)
            x = layers.Normalization(axis=-1, name="normalization")(x)
        for st in fam.stages:
            filters = scale_channels(fam, st, cfg.width)
            if st.block == "conv":
                x = self.conv(x, st, filters)
                continue
            if st.block == "mbconv":
                self.mb_stage += 1
            for j in range(scale_repeats(st, cfg.depth)):
                stride = st.stride if j == 0 else 1
                if st.block == "dwsep":
                    x = self.dwsep(x, st, filters, stride)
                elif st.block == "inverted_residual":
                    x = self.inverted_residual(x, st, filters, stride)
                else:
                    x = self.mbconv(x, st, filters, stride, j)
        x = self.head(x)
        return keras.Model(inputs, x, name=cfg.name)

    def head(self, x):
        cfg, names = self.cfg, self.fam.classifier_names
        if not cfg.include_top:
            if cfg.pooling == "avg":
                x = layers.GlobalAveragePooling2D(name=names.get("pool"))(x)
            elif cfg.pooling == "max":
                x = layers.GlobalMaxPooling2D(name=names.get("max_pool"))(x)
            return x
        dropout = cfg.effective_dropout
        if self.fam.classifier == "conv1x1":  # keras MobileNet (V1)
            x = layers.GlobalAveragePooling2D(keepdims=True)(x)
            x = layers.Dropout(dropout, name="dropout")(x)
            x = layers.Conv2D(cfg.classes, 1, padding="same", name="conv_preds")(x)
            x = layers.Reshape((cfg.classes,), name="reshape_2")(x)
            return layers.Activation(cfg.classifier_activation, name="predictions")(x)
        x = layers.GlobalAveragePooling2D(name=names.get("pool"))(x)
        if dropout > 0 and names.get("dropout"):
            x = layers.Dropout(dropout, name=names["dropout"])(x)
        return layers.Dense(cfg.classes, activation=cfg.classifier_activation, name="predictions",
                            **self.dense_kw)(x)


def build_keras(cfg: ModelConfig, weights: str | os.PathLike | None = None):
    """Build the Keras model for ``cfg``; ``weights`` is a Keras weights file, loaded by layer name."""
    model = _Builder(cfg).build()
    if weights is not None:
        load_weights_by_name(model, weights)
    return model


def reemit(caught) -> None:
    """Warn again the warnings ``catch_warnings(record=True)`` caught, each under the module that raised it (found
    from its file, as ``warnings.warn`` names it), so the caller's filters (``ignore::UserWarning:keras``) and
    once-per-location registry apply as if they had never been caught."""
    import sys
    import warnings

    by_file = {getattr(m, "__file__", None): m for m in list(sys.modules.values())}
    for w in caught:
        mod = by_file.get(w.filename)
        if mod is None:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            continue
        registry = vars(mod).setdefault("__warningregistry__", {})
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, module=mod.__name__, registry=registry,
                               module_globals=vars(mod), source=w.source)


def load_weights_by_name(model, path: str | os.PathLike) -> None:
    """Load a Keras weights file into ``model``, checking every shape.

    - Legacy HDF5 (``.h5``, the format of keras.applications' ImageNet files): matched by layer name.
    - Keras 3 ``.weights.h5``: Keras stores these by position in the layer list (paths such as
      ``layers/conv2d_3``), so they load into an edgecv model whose layer order equals the source's,
      which holds for every keras.applications twin.
    """
    p = Path(path)
    if not p.is_file():
        raise EdgecvError(f"--weights: no such file: {str(p)!r}")
    from edgecv.builders.h5_weights import load_legacy_or_none

    # untrusted: external storage, virtual datasets and links refused before any dataset is read
    stored = load_legacy_or_none(p)
    if stored is None:
        import warnings

        # Keras warns once per layer it could not match ("Skipping nested container ...") before it raises: a
        # file that does not fit is this one line, not a hundred lines of warnings before it.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.load_weights(p)
            except (ValueError, KeyError, OSError, TypeError, AttributeError, IndexError) as exc:
                raise EdgecvError(f"--weights: {str(p)!r} does not fit {model.name}: {one_line(exc)[:300]}") from None
        reemit(caught)  # loaded: whatever Keras said still reaches the caller
        return
    by_layer = {layer.name: layer for layer in model.layers if layer.weights}
    # Auto-named layers (keras.applications' Normalization) get a session-dependent suffix
    # ("normalization_3"): match them by their base name when that is unambiguous.
    for name in by_layer:
        if name not in stored:
            alike = [k for k in stored if re.fullmatch(re.escape(name) + r"(_\d+)?", k)]
            if len(alike) == 1:
                stored[name] = stored.pop(alike[0])
    missing = [n for n in by_layer if n not in stored]
    if missing:
        raise EdgecvError(f"--weights: {str(p)!r} has no weights for layer(s) {missing[:3]}"
                          f"{' ...' if len(missing) > 3 else ''}")
    for name, layer in by_layer.items():
        arrays = stored[name]
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise EdgecvError(f"--weights: layer {name!r} expects shapes {expected}, file has {got}")
        layer.set_weights(arrays)

