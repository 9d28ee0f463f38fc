"""Shared helpers for the quality benchmark and its test: a real image task that ships inside a package.

scikit-learn's handwritten digits (1797 images, 8x8, 16 grey levels, 10 classes) upscaled with bilinear
interpolation to ``resolution`` px and repeated over 3 channels as RGB pixels 0..255. Nothing is downloaded.
The train/test split is stratified and seeded; training and evaluation both go through the model family's own
preprocessing (``Family.preprocessing``), exactly as ``edgecv quantize --calib`` applies it.

Also here: short seeded training of an edgecv registry model (BatchNorm momentum lowered, see
the toolchain notes), and running a converted artifact on the test set in its runtime
(``edgecv.conversion.verify.run_artifact``, a child process that never imports TensorFlow).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASSES = 10
TRAIN_BN_MOMENTUM = 0.9  # the families' 0.99/0.999 leave the moving statistics unconverged after ~300 steps


@dataclass(frozen=True)
class Digits:
    """Pixels (N, R, R, 3) float32 0..255 and labels, split into train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    resolution: int
    seed: int


def load_digits(resolution: int = 32, test_fraction: float = 0.25, seed: int = 0) -> Digits:
    """The digits data set as RGB pixels at ``resolution`` px, with a seeded stratified split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split
    from skimage.transform import resize

    d = sk_digits()
    img = d.images.astype(np.float32) * (255.0 / 16.0)  # 0..16 -> 0..255
    up = resize(img, (len(img), resolution, resolution), order=1, mode="edge", anti_aliasing=False,
                preserve_range=True).astype(np.float32)
    rgb = np.repeat(np.clip(up, 0.0, 255.0)[..., None], 3, axis=-1)
    xtr, xte, ytr, yte = train_test_split(rgb, d.target.astype(np.int64), test_size=test_fraction,
                                          random_state=seed, stratify=d.target)
    return Digits(np.ascontiguousarray(xtr), ytr, np.ascontiguousarray(xte), yte, resolution, seed)


def augment(x: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Random integer translations (edge padding) of a pixel batch: cheap, and enough for digits."""
    if max_shift <= 0:
        return x
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
    out = np.empty_like(x)
    dy = rng.integers(0, 2 * max_shift + 1, n)
    dx = rng.integers(0, 2 * max_shift + 1, n)
    for i in range(n):
        out[i] = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def seed_everything(seed: int, deterministic: bool = True) -> None:
    from edgecv.native import import_tensorflow

    tf = import_tensorflow()  # TensorFlow's start-up notices silenced
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


@dataclass(frozen=True)
class Trained:
    model: object  # keras.Model (inference: call with training=False)
    name: str  # registry name of the configuration
    preprocessing: object  # edgecv.builders.arch.Preprocessing
    float_accuracy: float  # Keras model on the test set
    train_seconds: float
    build_seconds: float
    epochs: int
    params: int


def train(name: str, data: Digits, *, epochs: int, batch_size: int = 64, learning_rate: float = 5e-3,
          max_shift: int = 2, seed: int = 0, verbose: bool = False, **overrides) -> Trained:
    """Build ``name`` with ``classes`` (the largest training label + 1: 10 for digits) and
    ``resolution=data.resolution`` (plus ``overrides``) and train it.

    The classifier's kernel starts at zero (Keras' EfficientNet initializer gives logits of std ~10 at 1280
    features, which costs many of the few steps here). Adam with one epoch of warm-up then cosine decay,
    label smoothing 0.1, random shifts;
    BatchNorm momentum set to ``TRAIN_BN_MOMENTUM`` for the short run. Seeded (Keras/TF/NumPy seeds, TF op
    determinism). The training step is one ``tf.function`` traced without autograph and run without Grappler:
    tracing a 150-400 layer model otherwise costs more CPU than the whole training.
    """
    from edgecv.native import import_tensorflow

    tf = import_tensorflow()  # TensorFlow's start-up notices silenced
    import keras

    from edgecv.builders.registry import create_model, get_config

    seed_everything(seed)
    classes = int(data.y_train.max()) + 1  # 10 for digits; other data sets built like Digits may have fewer
    cfg = get_config(name, classes=classes, resolution=data.resolution, **overrides)
    t0 = time.perf_counter()
    model = create_model(cfg)
    build_s = time.perf_counter() - t0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = TRAIN_BN_MOMENTUM
    head = next(layer for layer in reversed(model.layers) if getattr(layer, "kernel", None) is not None)
    head.kernel.assign(np.zeros(head.kernel.shape, np.float32))  # start from uniform outputs (loss ln classes)
    pre = cfg.spec.preprocessing
    steps_per_epoch = int(np.ceil(len(data.x_train) / batch_size))
    warmup = steps_per_epoch
    lr = keras.optimizers.schedules.CosineDecay(learning_rate / 10, decay_steps=max(1, epochs * steps_per_epoch - warmup),
                                                alpha=0.01, warmup_target=learning_rate, warmup_steps=warmup)
    opt = keras.optimizers.Adam(lr)
    opt.build(model.trainable_variables)
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)

    @tf.function(autograph=False, jit_compile=False, reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    rng = np.random.default_rng(seed)
    y_onehot = np.eye(classes, dtype=np.float32)[data.y_train]
    opts = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    t0 = time.perf_counter()
    try:
        for epoch in range(epochs):
            order = rng.permutation(len(data.x_train))
            x = pre.apply(augment(data.x_train[order], rng, max_shift))
            y = y_onehot[order]
            losses = [float(step(x[i:i + batch_size], y[i:i + batch_size])) for i in range(0, len(x), batch_size)]
            if verbose:
                print(f"  {cfg.name} epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": opts.get("disable_meta_optimizer",
                                                                                           False)})
    train_s = time.perf_counter() - t0
    acc = accuracy(keras_predict(model, pre.apply(data.x_test)), data.y_test)
    return Trained(model, cfg.name, pre, acc, train_s, build_s, epochs, int(model.count_params()))


def keras_predict(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(model(x[i:i + batch], training=False))
                           for i in range(0, len(x), batch)]).astype(np.float32)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def run_on(path: str | os.PathLike, x: np.ndarray, threads: int = 2, qdq_reference: bool = False) -> np.ndarray:
    """Outputs of a converted artifact (.tflite in LiteRT, .onnx in ONNX Runtime) on model-ready ``x``.

    ``qdq_reference``: ONNX Runtime with graph optimizations off (see ``edgecv.conversion.verify.run_artifact``).
    """
    from edgecv.conversion.verify import run_artifact

    out = run_artifact(Path(path), np.ascontiguousarray(x, np.float32), threads=threads,
                       qdq_reference=qdq_reference).output
    if out is None:
        raise RuntimeError(f"{path}: the runtime returned no output")
    return out.reshape(len(x), -1)


def save_calibration(path: Path, pre, pixels: np.ndarray) -> Path:
    """Write model-ready training images as a .npy for ``quantize(calib=...)`` (training images only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(pre.apply(pixels), np.float32))
    return path
