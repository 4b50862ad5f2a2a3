"""Reading, checking, splitting and streaming the LGG brain-MRI segmentation data.

Two layouts are understood, and detected from the folder itself:

* **Kaggle** (`mateuszbuda/lgg-mri-segmentation`, Buda et al. 2019)::

      kaggle_3m/<patient>/<patient>_<n>.tif        3 channels: pre-contrast, FLAIR, post-contrast
      kaggle_3m/<patient>/<patient>_<n>_mask.tif   1 channel, 0 or 255
      kaggle_3m/data.csv                           optional clinical table

* **Article** (`keras_segmentation`): ``images/<stem>.png`` + ``masks/<stem>.png`` paired by
  file stem, masks holding label indices (0/1, or 0/255 for binary masks).

Images are returned in the dataset's channel order (pre-contrast, FLAIR, post-contrast) although
OpenCV reads BGR; with `context_slices` c > 0 a slice comes with its c neighbours on each side
of the same patient as further channels, 3 (1 + 2c) in all (see `context_offsets`). Intensities
stay in 0..255: the model standardises each slice itself (see
`pspseg_utils.models.layers.SliceStandardization`), so a file fed to `predict` is treated exactly
as in training.

One module per job: `files` reads and writes single files, `layout` finds and checks a dataset,
`split` divides it by patient, `pipeline` decodes it into arrays and streams them through
tf.data (the only one that imports TensorFlow, when called), `sources` downloads and converts.
"""

from pspseg_utils.data.files import (
    IMAGE_SUFFIXES,
    DatasetError,
    archive_damage,
    binary_as_labels,
    context_offsets,
    read_image,
    read_mask,
    read_slice,
    write_failure,
    write_file,
    write_image,
)
from pspseg_utils.data.layout import (
    DatasetSummary,
    SliceRecord,
    detect_layout,
    find_images,
    find_pairs,
    find_slices,
    summarize,
)
from pspseg_utils.data.pipeline import (
    FLAIR_IN_PLACE_OF,
    SliceBatches,
    augment_pair,
    check_augmentation,
    load_arrays,
    make_dataset,
    neighbour_positions,
    stack_context,
    vary_scanner,
)
from pspseg_utils.data.sources import KAGGLE_HANDLE, KAGGLE_URL, prepare, resolve_data_dir
from pspseg_utils.data.split import patient_folds, select_patients, split_patients

__all__ = [
    "FLAIR_IN_PLACE_OF",
    "IMAGE_SUFFIXES",
    "KAGGLE_HANDLE",
    "KAGGLE_URL",
    "DatasetError",
    "SliceRecord",
    "DatasetSummary",
    "read_image",
    "read_slice",
    "read_mask",
    "binary_as_labels",
    "archive_damage",
    "write_file",
    "write_image",
    "write_failure",
    "context_offsets",
    "neighbour_positions",
    "stack_context",
    "find_slices",
    "find_pairs",
    "find_images",
    "detect_layout",
    "summarize",
    "split_patients",
    "patient_folds",
    "select_patients",
    "load_arrays",
    "augment_pair",
    "check_augmentation",
    "vary_scanner",
    "SliceBatches",
    "make_dataset",
    "prepare",
    "resolve_data_dir",
]
