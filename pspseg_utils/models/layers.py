"""Custom layers of the PSPNet: registered serializables, in `keras.ops` where they can be.

Keras has no portable layer for the standardisation and the pooling below
(`AdaptiveAveragePooling2D` arrived late in Keras 3, after the oldest version this course
supports), so they are written here, small. `FusedBatchNormalization` is Keras' own layer, made
to use TensorFlow's fused kernel when TensorFlow is the backend.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops, saving

# TensorFlow's fused kernel raises a smaller epsilon to this; Keras' path is used below it.
FUSED_MIN_EPSILON = 1.001e-5


@saving.register_keras_serializable(package="pspseg")
class SliceStandardization(layers.Layer):
    """Standardise each image's channels to zero mean and unit variance: (x - mean) / std.

    MRI intensities are in arbitrary units that differ between scanners and institutions; doing
    this inside the model means a raw 0..255 slice is all `predict` needs, and training and
    serving cannot drift apart. Shape (B, H, W, C) -> (B, H, W, C); a constant channel becomes 0.

    Args:
        epsilon: float. Added to the standard deviation to keep a flat channel finite.
        region: "slice" (every pixel) or "foreground": the mean and standard deviation of the
            pixels brighter than the channel's own mean, the head rather than the dark air
            around it, so that a slice's scale does not depend on how much of it the head fills.
            A channel with no pixel above its mean (a flat one) becomes 0 either way.
    """

    REGIONS = ("slice", "foreground")

    def __init__(self, epsilon: float = 1e-3, region: str = "slice", **kwargs):
        super().__init__(**kwargs)
        if region not in self.REGIONS:
            raise ValueError(f"region must be one of {self.REGIONS}, got {region!r}")
        self.epsilon = epsilon
        self.region = region

    def call(self, inputs):
        if self.region == "slice":
            x = ops.cast(inputs, self.compute_dtype)
            mean = ops.mean(x, axis=(1, 2), keepdims=True)
            std = ops.std(x, axis=(1, 2), keepdims=True)
            return (x - mean) / (std + self.epsilon)
        # Sums over a whole slice in float32: bfloat16 keeps 8 bits of mantissa.
        x32 = ops.cast(inputs, "float32")
        weights = ops.cast(x32 > ops.mean(x32, axis=(1, 2), keepdims=True), "float32")
        pixels = ops.sum(weights, axis=(1, 2), keepdims=True)
        count = ops.maximum(pixels, 1.0)
        mean = ops.sum(weights * x32, axis=(1, 2), keepdims=True) / count
        variance = ops.sum(weights * ops.square(x32 - mean), axis=(1, 2), keepdims=True) / count
        has_foreground = ops.cast(pixels > 0, "float32")
        standardised = has_foreground * (x32 - mean) / (ops.sqrt(variance) + self.epsilon)
        return ops.cast(standardised, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "region": self.region}


def adaptive_pooling_matrix(length: int, bins: int) -> np.ndarray:
    """A (bins, length) matrix whose rows average the adaptive bins of a length-`length` axis.

    Bin i covers [floor(i * L / b), ceil((i + 1) * L / b)), as PyTorch's adaptive pooling: bins
    overlap by a pixel when L is not divisible by b, so every bin is non-empty whenever L >= b.
    Example: L=4, b=3 -> bins [0, 2), [1, 3), [2, 4), rows [.5 .5 0 0], [0 .5 .5 0], [0 0 .5 .5].
    """
    matrix = np.zeros((bins, length), dtype="float32")
    for i in range(bins):
        start, stop = (i * length) // bins, -((-(i + 1) * length) // bins)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


@saving.register_keras_serializable(package="pspseg")
class AdaptiveAveragePooling(layers.Layer):
    """Average-pool a (B, H, W, C) map into (B, bins, bins, C) adaptive bins, for any H and W.

    Computed as P_h @ x @ P_w^T with the fixed matrices of `adaptive_pooling_matrix`, one einsum
    that runs on every backend. H and W must be known when the layer is built.

    Args:
        bins: int. Output bins per side (1 gives global average pooling).
    """

    def __init__(self, bins: int, **kwargs):
        super().__init__(**kwargs)
        if int(bins) < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        self.bins = int(bins)

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None or height < self.bins or width < self.bins:
            raise ValueError(
                f"{self.name}: needs a known feature map of at least {self.bins}x{self.bins}, got "
                f"{height}x{width}; use a larger input size or smaller bins"
            )
        self._rows = adaptive_pooling_matrix(height, self.bins)
        self._cols = adaptive_pooling_matrix(width, self.bins)

    def call(self, inputs):
        rows = ops.cast(self._rows, inputs.dtype)
        cols = ops.cast(self._cols, inputs.dtype)
        return ops.einsum("ih,bhwc,jw->bijc", rows, inputs, cols)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "bins": self.bins}


@saving.register_keras_serializable(package="pspseg")
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused kernel on that backend.

    Keras 3 normalises with separate ops (a float32 cast, moments, scale and shift) and
    differentiates through each of them: on a 2-core CPU, about half the operator time of a
    MobileNetV2 training step. TensorFlow's FusedBatchNormV3 does each direction in one op;
    MobileNetV2-PSPNets then train 1.5-1.7x faster at 128 px (README, Performance). Same
    weights, config and results as Keras' layer: the batch variance, used for the moving average
    too, is the biased one. Other backends, masks, renorm, synchronized statistics, inputs other
    than (B, H, W, C) and epsilons below 1.001e-5 take Keras' own path.
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # the backend here, so already imported

        channels = inputs.shape[-1]
        gamma = ops.cast(self.gamma, "float32") if self.scale else ops.ones((channels,))
        beta = ops.cast(self.beta, "float32") if self.center else ops.zeros((channels,))
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True
            )
            count = ops.cast(ops.size(inputs) // channels, "float32")
            variance = variance * (count - 1) / count  # the kernel applies Bessel's correction
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                moving.assign(moving * self.momentum + batch * (1.0 - self.momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs,
                gamma,
                beta,
                mean=ops.cast(self.moving_mean, "float32"),
                variance=ops.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon,
                is_training=False,
            )
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not getattr(self, "renorm", False)  # Keras < 3.14 has no renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.epsilon >= FUSED_MIN_EPSILON
            and keras.backend.standardize_dtype(inputs.dtype) in ("float32", "bfloat16", "float16")
        )
