"""What `fit` reads: the batches of `data.SliceBatches`, as a tf.data pipeline on TensorFlow and
as a Keras PyDataset on the other backends (JAX, PyTorch); the same batches either way."""

from __future__ import annotations

import os

import keras
import numpy as np

from pspseg_utils import data


class BatchSequence(keras.utils.PyDataset):
    """A `data.SliceBatches` from batch `first_batch` on, for `fit` on any backend: endless when
    the stream repeats, so an epoch of `steps_per_epoch` batches carries on from the last.

    Keras' own workers are left off: stopped at each epoch's end, they drop the batches they had
    fetched ahead of an endless stream. The slices of a batch are augmented in parallel instead
    (`SliceBatches`' workers).
    """

    def __init__(self, batches: data.SliceBatches, *, first_batch: int = 0):
        super().__init__(workers=1, use_multiprocessing=False)
        if batches.num_batches is not None and not 0 <= first_batch < batches.num_batches:
            raise ValueError(
                f"first_batch must be in [0, {batches.num_batches}), got {first_batch!r}"
            )
        self.batches, self.first_batch = batches, first_batch

    @property
    def num_batches(self) -> int | None:
        total = self.batches.num_batches
        return None if total is None else total - self.first_batch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.batches[self.first_batch + index]


def batch_stream(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    first_batch: int = 0,
    **settings,
):
    """The batches of `data.SliceBatches(images, masks, **settings)` from `first_batch` on, as
    `fit` reads them on the backend in use: `data.make_dataset` on TensorFlow, a
    `BatchSequence` elsewhere."""
    if keras.backend.backend() == "tensorflow":
        return data.make_dataset(images, masks, first_batch=first_batch, **settings)
    batches = data.SliceBatches(images, masks, workers=os.cpu_count() or 1, **settings)
    return BatchSequence(batches, first_batch=first_batch)
