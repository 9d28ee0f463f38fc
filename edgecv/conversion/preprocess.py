"""What a model expects as input: the ``--preprocess`` option and the family's preprocessing, per channel.

A model takes pixels ``x`` (0..255, RGB for 3 channels, grayscale for 1) transformed as ``(x - mean) / std``,
per channel (``mean``/``std`` of length 1 or C), after an optional RGB -> BGR swap. Named conventions
(the keras.applications ``preprocess_input`` modes):

- ``none``: raw pixels 0..255 (the model normalizes itself: Keras EfficientNet, MobileNetV3, ConvNeXt).
- ``tf``: ``x / 127.5 - 1``, range [-1, 1] (MobileNet v1/v2, Xception, NASNet, Inception).
- ``torch``: ``(x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`` (ImageNet mean/std; DenseNet,
  most PyTorch models exported to ONNX).
- ``caffe``: RGB -> BGR, then ``x - [103.939, 116.779, 123.68]`` (ResNet50, VGG).
- ``mean=M[,M...];std=S[,S...]``: explicit, in pixel units (0..255), one value or one per channel.

One-channel models: ``torch``/``caffe`` use the average of their three means and stds. Models with N channels
(N not 1 or 3): named conventions with per-channel values are undefined; give ``none``, ``tf`` or explicit values.

Default for a model edgecv did not build: ``none`` when the model normalizes its input itself (a ``Rescaling``
or ``Normalization`` layer before its first layer with trainable weights), otherwise ``tf`` with a warning
(the convention of most Keras image models; ResNet/VGG need ``caffe``, PyTorch models ``torch``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecv.errors import EdgecvError, suggest

NAMED = ("none", "tf", "torch", "caffe")
_TORCH_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_TORCH_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
USAGE = "none, tf, torch, caffe or mean=M[,M...];std=S[,S...] (pixel units, 1 or C values)"


@dataclass(frozen=True)
class InputPreprocessing:
    """``(pixels - mean) / std`` per channel, after an RGB -> BGR swap when ``bgr``; ``in_model``: raw pixels."""

    name: str  # none | tf | torch | caffe | custom | family:<id>
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_model: bool = False
    bgr: bool = False
    source: str = "--preprocess"  # family | --preprocess | detected | default

    @property
    def range(self) -> tuple[float, float]:
        """The model-input range that pixels 0..255 map to (the widest over channels)."""
        if self.in_model:
            return (0.0, 255.0)
        lo = [(0.0 - m) / s for m, s in zip(self.mean, self.std)]
        hi = [(255.0 - m) / s for m, s in zip(self.mean, self.std)]
        return (float(min(lo)), float(max(hi)))

    def apply(self, pixels) -> np.ndarray:
        x = np.asarray(pixels, dtype=np.float32)
        if self.bgr and x.shape[-1] == 3:
            x = x[..., ::-1]
        if self.in_model:
            return np.ascontiguousarray(x)
        return (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def for_channels(self, channels: int, option: str = "--preprocess") -> InputPreprocessing:
        """The same preprocessing with ``mean``/``std`` of length 1 or ``channels``."""
        mean, std = self.mean, self.std
        if len(mean) in (1, channels) and len(std) in (1, channels):
            return self if channels == 3 or not self.bgr else _replace(self, bgr=False)
        if len(set(mean)) == 1 and len(set(std)) == 1:
            return _replace(self, mean=mean[:1], std=std[:1], bgr=False)
        if channels == 1:  # grayscale: the average of the per-channel values
            return _replace(self, mean=(float(np.mean(mean)),), std=(float(np.mean(std)),), bgr=False)
        raise EdgecvError(f"{option}: {self.name} has {len(mean)} per-channel values but the model takes "
                          f"{channels} channels: pass --preprocess mean=M[,M...];std=S[,S...] with 1 or "
                          f"{channels} values, or none/tf")

    def to_dict(self) -> dict[str, Any]:
        return {"preprocess": self.name, "source": self.source, "mean": list(self.mean), "std": list(self.std),
                "channel_order": "BGR" if self.bgr else "RGB", "in_model": self.in_model, "range": list(self.range)}

    def describe(self) -> str:
        if self.in_model:
            return "raw pixels 0..255 (normalization inside the model)"
        m = self.mean[0] if len(set(self.mean)) == 1 else [round(v, 3) for v in self.mean]
        s = self.std[0] if len(set(self.std)) == 1 else [round(v, 3) for v in self.std]
        swap = "RGB -> BGR, " if self.bgr else ""
        return f"{swap}(x - {m}) / {s} -> range [{self.range[0]:.3g}, {self.range[1]:.3g}]"


def _replace(pre: InputPreprocessing, **kw) -> InputPreprocessing:
    import dataclasses

    return dataclasses.replace(pre, **kw)


def named(name: str, source: str = "--preprocess") -> InputPreprocessing:
    if name == "none":
        return InputPreprocessing("none", (0.0,), (1.0,), in_model=True, source=source)
    if name == "tf":
        return InputPreprocessing("tf", (127.5,), (127.5,), source=source)
    if name == "torch":
        return InputPreprocessing("torch", _TORCH_MEAN, _TORCH_STD, source=source)
    if name == "caffe":
        return InputPreprocessing("caffe", _CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), bgr=True, source=source)
    raise EdgecvError(f"--preprocess: expected {USAGE}. Received: {name!r}{suggest(name, NAMED)}")


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CUSTOM = re.compile(rf"\s*mean\s*=\s*({_NUM}(?:\s*,\s*{_NUM})*)\s*[;:\s]\s*std\s*=\s*({_NUM}(?:\s*,\s*{_NUM})*)\s*")


def parse(spec: str | InputPreprocessing) -> InputPreprocessing:
    """``--preprocess`` text -> :class:`InputPreprocessing` (one-line EdgecvError naming the option)."""
    if isinstance(spec, InputPreprocessing):
        return spec
    if not isinstance(spec, str):
        raise EdgecvError(f"--preprocess: expected {USAGE}. Received: {spec!r}")
    text = spec.strip().lower()
    if text in NAMED:
        return named(text)
    m = _CUSTOM.fullmatch(text)
    if not m:
        raise EdgecvError(f"--preprocess: expected {USAGE}. Received: {spec!r}"
                          + (suggest(text, NAMED) if "=" not in text else ""))
    mean = tuple(float(v) for v in m.group(1).split(","))
    std = tuple(float(v) for v in m.group(2).split(","))
    if not all(math.isfinite(v) for v in mean + std) or not all(v > 0 for v in std):
        raise EdgecvError(f"--preprocess: mean must be finite and std finite and > 0. Received: {spec!r}")
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise EdgecvError(f"--preprocess: mean has {len(mean)} values and std {len(std)}; give 1 or C of each. "
                          f"Received: {spec!r}")
    return InputPreprocessing("custom", mean, std)


def from_family(pre: Any, family: str | None) -> InputPreprocessing:
    """An edgecv family's :class:`edgecv.builders.arch.Preprocessing` as an :class:`InputPreprocessing`."""
    name = f"family:{family}" if family else "family"
    if pre.in_model:
        return InputPreprocessing(name, (0.0,), (1.0,), in_model=True, source="family")
    return InputPreprocessing(name, tuple(float(v) for v in pre.mean), tuple(float(v) for v in pre.std),
                              source="family")


_IN_MODEL_LAYERS = ("Rescaling", "Normalization")


def normalizes_input(km: Any) -> bool:
    """Whether a Keras model rescales/normalizes its own input: a Rescaling or Normalization layer before
    its first layer with trainable weights (keras.applications EfficientNet, MobileNetV3, ConvNeXt)."""
    for layer in getattr(km, "layers", ()):
        if type(layer).__name__ in _IN_MODEL_LAYERS:
            return True
        try:
            if layer.trainable_weights:
                return False
        except Exception:  # noqa: BLE001 - a layer that cannot list its weights: stop looking
            return False
    return False


def check_length(pre: InputPreprocessing, channels: int) -> None:
    """Explicit mean/std must have 1 or C values."""
    for what, vals in (("mean", pre.mean), ("std", pre.std)):
        if len(vals) not in (1, channels) and pre.name == "custom":
            raise EdgecvError(f"--preprocess: {what} has {len(vals)} values but the model takes {channels} "
                              f"channel(s); give 1 or {channels}")
