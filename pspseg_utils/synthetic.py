"""Deterministic synthetic LGG-like brain MRI, written in the Kaggle ``kaggle_3m`` layout.

The course trains on the LGG segmentation dataset of Buda et al. (Kaggle
``mateuszbuda/lgg-mri-segmentation``). This module fabricates a stand-in with the same files, so
that every notebook and test runs offline:

    OUT_DIR/kaggle_3m/data.csv                         Patient,site,slices,tumour_slices
    OUT_DIR/kaggle_3m/<folder>/<folder>_<n>.tif        n = 1..slices, H x W x 3 uint8
    OUT_DIR/kaggle_3m/<folder>/<folder>_<n>_mask.tif   H x W uint8, exactly 0 or 255

with ``<folder> = SYN_<site>_<i:04d>_20000101``. As in the real dataset the three channels are
(pre-contrast, FLAIR, post-contrast); OpenCV stores them reversed (BGR), so
``cv2.imread(path, cv2.IMREAD_UNCHANGED)[..., ::-1]`` gives them back in dataset order.

The images are meant to be a real, if easier, learning problem: a head with scalp, skull,
cerebrospinal fluid (CSF), folded cortex, deep grey matter and ventricles; texture, bias field,
noise and contrast that change between patients; an irregular 3-D tumour that is bright on FLAIR;
and bright FLAIR structures that are *not* tumour, so that thresholding FLAIR does not solve it.

How it works: all of a patient's randomness is drawn first into small "plans" (shapes, sizes,
coarse noise grids); the volume is then rendered a few slices at a time (so that the float32
working arrays stay in the CPU cache), each structure only in the box of pixels it can reach.
Shapes are placed in *brain coordinates* ``(u, v)``, in which every slice's brain is about the
unit disc, so that they shrink with the brain towards the skull base and the vertex and always
stay inside it. Files are lossless PackBits TIFFs, which any TIFF reader opens.
"""

from __future__ import annotations

import csv
import functools
import math
import operator
import pathlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm.auto import tqdm

from pspseg_utils.rules import SEQUENCES

__all__ = ["SITES", "generate_dataset", "patient_folder_name", "synthesize_patient"]

SITES = ("AA", "BB", "CC")
SCAN_DATE = "20000101"
CSV_COLUMNS = ("Patient", "site", "slices", "tumour_slices")

MIN_IMAGE_SIZE = 32
# Fewer slices than this leave no room for a run of tumour slices with tumour-free ones around.
MIN_SLICES = 5

# Mean tissue intensities on a 0..255 scale, columns in channel order (pre-contrast, FLAIR,
# post-contrast). Roughly what the real data shows: scalp fat is bright on T1, bone and CSF are
# dark, grey matter is darker than white matter on T1 and brighter on FLAIR.
TISSUE_INTENSITY = {
    "white_matter": (125.0, 88.0, 128.0),
    "grey_matter": (100.0, 108.0, 104.0),
    "csf": (38.0, 26.0, 44.0),
    "bone": (22.0, 18.0, 28.0),
    "scalp": (185.0, 130.0, 200.0),
}
# Relative change of non-tumour FLAIR lesions per channel: bright on FLAIR, a bit dark on T1.
LESION_EFFECT = (-0.1, 1.0, -0.05)
POST = SEQUENCES.index("post-contrast")
# libtiff's COMPRESSION_PACKBITS; OpenCV only names the constant from 4.9 on.
TIFF_OPTIONS = (cv2.IMWRITE_TIFF_COMPRESSION, 32773)
# Pixels rendered per chunk: small enough for the float32 working arrays to stay in cache.
CHUNK_PIXELS = 1 << 18


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _as_int(value, name: str) -> int:
    """``value`` as an int; bools and non-integral numbers are refused with a ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _check_image_size(image_size) -> int:
    size = _as_int(image_size, "image_size")
    if size < MIN_IMAGE_SIZE or size % 8:
        raise ValueError(
            f"image_size must be a multiple of 8 and at least {MIN_IMAGE_SIZE}, got {image_size!r}"
        )
    return size


def _check_num_slices(num_slices) -> int:
    count = _as_int(num_slices, "num_slices")
    if count < MIN_SLICES:
        raise ValueError(f"num_slices must be at least {MIN_SLICES}, got {num_slices!r}")
    return count


def _check_slice_range(slices_per_patient) -> tuple[int, int]:
    message = (
        "slices_per_patient must be a pair (low, high) of integers with "
        f"{MIN_SLICES} <= low <= high, got {slices_per_patient!r}"
    )
    if isinstance(slices_per_patient, str | bytes) or not isinstance(slices_per_patient, Sequence):
        raise ValueError(message)
    if len(slices_per_patient) != 2:
        raise ValueError(message)
    try:
        low, high = (_as_int(value, "slices_per_patient") for value in slices_per_patient)
    except ValueError:
        raise ValueError(message) from None
    if not MIN_SLICES <= low <= high:
        raise ValueError(message)
    return low, high


# --------------------------------------------------------------------------------------------
# numeric helpers (float32 arrays in and out)
# --------------------------------------------------------------------------------------------


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A Python float: unlike numpy scalars it never promotes float32 arrays to float64."""
    return float(rng.uniform(low, high))


def _ramp(values: np.ndarray, edge0: float, edge1: float) -> np.ndarray:
    """0 at edge0, 1 at edge1, linear between and clamped outside (edges may be reversed)."""
    return np.clip((values - edge0) * (1.0 / (edge1 - edge0)), 0.0, 1.0)


def _ellipse_distance(u, v, centre, radii, angle: float = 0.0) -> np.ndarray:
    """Normalised distance from an ellipse's centre: < 1 inside, 1 on its outline.

    ``radii`` are (along ``angle``, across it). Centre and radii may be arrays that broadcast
    against ``u`` and ``v``, e.g. one value per slice of shape (S, 1, 1).
    """
    cos, sin = math.cos(angle), math.sin(angle)
    du, dv = u - centre[0], v - centre[1]
    along = (cos * du + sin * dv) / radii[0]
    across = (cos * dv - sin * du) / radii[1]
    return np.sqrt(along * along + across * across)


def _coarse_noise(
    rng: np.random.Generator, cells: int, num_slices: int, z_sigma: float
) -> np.ndarray:
    """White noise on a (cells, cells) grid per slice, blurred across slices so neighbouring
    slices look alike, standardised: float32 (cells, cells, S). See ``_upsample``."""
    coarse = rng.standard_normal((cells * cells, num_slices), dtype=np.float32)
    # A (k, 1) kernel blurs along the columns only, i.e. along the slice axis.
    coarse = cv2.GaussianBlur(coarse, (2 * math.ceil(3 * z_sigma) + 1, 1), z_sigma)
    coarse -= coarse.mean()
    coarse /= coarse.std() + 1e-6
    return coarse.reshape(cells, cells, num_slices)


@functools.cache
def _normal_quantiles() -> np.ndarray:
    """Standard normal quantiles at the midpoints of 65536 equal-probability bins, float32."""
    inverse_cdf = statistics.NormalDist().inv_cdf
    return np.array([inverse_cdf((i + 0.5) / 65536) for i in range(65536)], dtype=np.float32)


def _gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise, through a 16-bit inverse-CDF table.

    Several times faster than ``Generator.standard_normal``, which dominated the run time, and
    indistinguishable from it at uint8 precision.
    """
    codes = np.frombuffer(rng.bytes(2 * math.prod(shape)), dtype="<u2")
    return _normal_quantiles()[codes].reshape(shape)


# --------------------------------------------------------------------------------------------
# plans: everything random about one patient, drawn before any pixel is rendered
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Head:
    scale: np.ndarray  # (S,) relative size per slice
    semi_x: float  # left-right semi-axis at full size, as a fraction of half the image
    semi_y: float  # front-back semi-axis
    tilt: float
    centre_x: float
    centre_y: np.ndarray  # (S,): the head drifts a little from slice to slice
    wobble: tuple  # (order, amplitude, phase) harmonics of the outline
    scalp: float  # layer thicknesses, pixels
    bone: float
    csf: float


@dataclass(frozen=True)
class _Cortex:
    folds: np.ndarray  # coarse noise whose zero lines are the sulci
    reach: float  # how deep sulci cut in, as a brain radius
    sulcus_width: float  # in units of the folds' standard deviation
    texture: np.ndarray  # coarse noise for the tissue texture
    texture_strength: float


@dataclass(frozen=True)
class _Deep:
    presence: np.ndarray  # (S,) 0..1, how much of the ventricles a slice shows
    size: float
    spacing: float
    splay: float
    offset: float
    cap_strength: float  # FLAIR boost at the horn tips (0: none)
    cap_size: float
    halo_strength: float  # FLAIR boost of a thin periventricular rim (0: none)


@dataclass(frozen=True)
class _Spot:
    centre: tuple[float, float]
    size: float
    z_centre: float
    z_radius: float
    strength: float


@dataclass(frozen=True)
class _Streak:
    first: int
    last: int
    start: float
    span: float
    band: float
    strength: float


@dataclass(frozen=True)
class _Tumour:
    # (centre_u, centre_v, centre_z, radius_along, radius_across, radius_z, angle); z in slices
    lobes: tuple
    roughness: float
    shape_noise: np.ndarray  # coarse noise perturbing the outline
    texture: np.ndarray
    change: np.ndarray  # (3,) relative intensity change against white matter per channel
    cyst: float  # darkening of a cystic core (0: none)
    rim: float  # post-contrast rim enhancement (0: none)


@dataclass(frozen=True)
class _Scanner:
    tissue: dict  # name -> float32 (3,) intensities after this scanner's contrast
    bias: tuple  # per channel (a, b, c, d, e) coefficients of the bias field
    noise_sigma: tuple  # per channel


def _slice_scale(num_slices: int) -> np.ndarray:
    """Relative head size per slice, float32 (S,): smaller at the skull base and the vertex."""
    position = (np.arange(num_slices, dtype=np.float32) + 0.5) / num_slices
    # An off-centre sphere profile: the vertex (last slices) narrows faster than the base.
    return np.sqrt(np.clip(1.0 - ((position - 0.45) / 0.64) ** 2, 0.12, 1.0))


def _plan_head(rng: np.random.Generator, num_slices: int, image_size: int) -> _Head:
    drift = np.linspace(0.0, _uniform(rng, -0.05, 0.05), num_slices, dtype=np.float32)
    return _Head(
        scale=_slice_scale(num_slices),
        semi_x=_uniform(rng, 0.64, 0.74),
        semi_y=_uniform(rng, 0.80, 0.90),  # heads are longer than wide
        tilt=_uniform(rng, -0.15, 0.15),
        centre_x=_uniform(rng, -0.04, 0.04),
        centre_y=_uniform(rng, -0.04, 0.04) + drift,
        wobble=tuple(
            (order, 0.05 * _uniform(rng, 0.3, 1.0) / order, _uniform(rng, 0, 2 * math.pi))
            for order in range(2, 6)
        ),
        scalp=_uniform(rng, 0.018, 0.03) * image_size,
        bone=_uniform(rng, 0.01, 0.016) * image_size,
        csf=_uniform(rng, 0.004, 0.01) * image_size,
    )


def _plan_cortex(rng: np.random.Generator, num_slices: int, image_size: int) -> _Cortex:
    fold_cells = max(6, round(image_size / _uniform(rng, 12.0, 16.0)))
    return _Cortex(
        folds=_coarse_noise(rng, fold_cells, num_slices, z_sigma=0.8),
        reach=_uniform(rng, 0.5, 0.65),
        sulcus_width=_uniform(rng, 0.08, 0.16),
        texture=_coarse_noise(rng, max(8, image_size // 5), num_slices, z_sigma=0.7),
        texture_strength=_uniform(rng, 0.03, 0.07),
    )


def _plan_deep(rng: np.random.Generator, num_slices: int) -> _Deep:
    position = (np.arange(num_slices, dtype=np.float32) + 0.5) / num_slices
    peak = _uniform(rng, 0.48, 0.6)
    presence = np.clip((np.exp(-(((position - peak) / 0.16) ** 2)) - 0.2) / 0.8, 0.0, 1.0)
    return _Deep(
        presence=presence,
        size=_uniform(rng, 0.75, 1.35),  # enlarged ventricles are common in older patients
        spacing=_uniform(rng, 0.1, 0.14),
        splay=_uniform(rng, 0.15, 0.4),
        offset=_uniform(rng, -0.1, 0.05),
        cap_strength=_uniform(rng, 0.3, 0.9) if rng.random() < 0.85 else 0.0,
        cap_size=_uniform(rng, 0.05, 0.1),
        halo_strength=_uniform(rng, 0.2, 0.6) if rng.random() < 0.5 else 0.0,
    )


def _plan_spots(rng: np.random.Generator, num_slices: int) -> list[_Spot]:
    spots = []
    for _ in range(int(rng.integers(3, 10))):
        angle, radius = _uniform(rng, 0, 2 * math.pi), 0.72 * math.sqrt(rng.random())
        spots.append(
            _Spot(
                centre=(radius * math.cos(angle), radius * math.sin(angle)),
                size=_uniform(rng, 0.03, 0.08),
                z_centre=_uniform(rng, 0, num_slices - 1),
                z_radius=_uniform(rng, 0.7, 2.5),
                strength=_uniform(rng, 0.45, 1.1),
            )
        )
    return spots


def _plan_streak(rng: np.random.Generator, num_slices: int) -> _Streak | None:
    if rng.random() >= 0.5:
        return None
    run = int(rng.integers(2, 7))
    first = int(rng.integers(0, max(1, num_slices - run)))
    return _Streak(
        first=first,
        last=min(num_slices, first + run),
        start=_uniform(rng, -math.pi, math.pi),
        span=_uniform(rng, 0.5, 1.2),
        band=_uniform(rng, 0.88, 0.93),
        strength=_uniform(rng, 0.5, 1.0),
    )


def _plan_tumour(
    rng: np.random.Generator, head: _Head, num_slices: int, image_size: int
) -> _Tumour:
    centre_z = _uniform(rng, 0.3, 0.68) * (num_slices - 1)
    # At least 3 pixels of in-plane radius (and 1.5 slices, below), so that even on tiny images
    # the voxel nearest the centre is inside the tumour: it is never empty.
    scale = float(head.scale[round(centre_z)])
    brain_fraction = _brain_fraction(head, scale, image_size)
    brain_px = head.semi_x * scale * image_size / 2.0 * brain_fraction  # narrowest half-width
    in_plane = max(_uniform(rng, 0.14, 0.36), 3.0 / max(brain_px, 1.0))
    # About a third of the slices carry tumour on average, as in the real data (1373 / 3929).
    z_radius = max(1.5, _uniform(rng, 0.09, 0.2) * num_slices)
    angle = _uniform(rng, 0, 2 * math.pi)
    distance = _uniform(rng, 0.0, max(0.0, 0.75 - in_plane))
    centre_u, centre_v = distance * math.cos(angle), distance * math.sin(angle)
    main_radii = (in_plane * _uniform(rng, 0.75, 1.25), in_plane * _uniform(rng, 0.75, 1.25))
    lobes = [(centre_u, centre_v, centre_z, *main_radii, z_radius, _uniform(rng, 0, math.pi))]
    for _ in range(int(rng.integers(1, 4))):
        direction, reach = _uniform(rng, 0, 2 * math.pi), _uniform(rng, 0.4, 0.9) * in_plane
        lobes.append(
            (
                centre_u + reach * math.cos(direction),
                centre_v + reach * math.sin(direction),
                centre_z + _uniform(rng, -0.5, 0.5) * z_radius,
                in_plane * _uniform(rng, 0.35, 0.75),
                in_plane * _uniform(rng, 0.35, 0.75),
                z_radius * _uniform(rng, 0.4, 0.8),
                direction,
            )
        )
    # Relative to white matter: from hypo- to mildly hyperintense on T1, a little more after
    # contrast; clearly hyperintense on FLAIR.
    pre_change = _uniform(rng, -0.25, 0.1)
    post_change = pre_change + _uniform(rng, 0.0, 0.08)
    return _Tumour(
        lobes=tuple(lobes),
        # At most 0.4, so that noise cannot hollow out the voxel nearest the main lobe's centre:
        # the tumour is never empty.
        roughness=_uniform(rng, 0.25, 0.4),
        shape_noise=_coarse_noise(rng, max(6, image_size // 10), num_slices, z_sigma=0.8),
        texture=_coarse_noise(rng, max(4, image_size // 8), num_slices, z_sigma=1.0),
        change=np.array([pre_change, _uniform(rng, 0.3, 0.8), post_change], dtype=np.float32),
        cyst=_uniform(rng, 0.4, 0.8) if rng.random() < 0.25 else 0.0,
        rim=_uniform(rng, 0.35, 0.7) if rng.random() < 0.35 else 0.0,
    )


def _plan_scanner(rng: np.random.Generator) -> _Scanner:
    """Contrast, bias field and noise level: they differ between scanners and protocols."""
    gain = rng.uniform(0.85, 1.15, 3)
    gamma = rng.uniform(0.85, 1.2, 3)
    tissue = {}
    for name, intensity in TISSUE_INTENSITY.items():
        jittered = np.asarray(intensity) * rng.uniform(0.95, 1.05, 3)
        tissue[name] = (255.0 * (jittered / 255.0) ** gamma * gain).astype(np.float32)
    bias = tuple(tuple(float(c) for c in rng.uniform(-0.12, 0.12, 5)) for _ in SEQUENCES)
    return _Scanner(tissue, bias, tuple(float(s) for s in rng.uniform(2.0, 5.0, 3)))


# --------------------------------------------------------------------------------------------
# rendering, a few slices at a time, only where there is something to draw
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """A box of voxels: a run of slices times a rectangle of pixels (absolute indices)."""

    slices: slice
    rows: slice
    cols: slice

    def intersect(self, slices: slice, rows: slice, cols: slice) -> _Window | None:
        """The part of the box ``slices x rows x cols`` inside this window, None if empty."""
        bounds = []
        for mine, theirs in zip(
            (self.slices, self.rows, self.cols), (slices, rows, cols), strict=True
        ):
            start, stop = max(mine.start, theirs.start), min(mine.stop, theirs.stop)
            if start >= stop:
                return None
            bounds.append(slice(start, stop))
        return _Window(*bounds)

    def inside(self, outer: _Window) -> tuple[slice, slice, slice]:
        """Index of this window in arrays that cover ``outer``."""
        return tuple(
            slice(mine.start - theirs.start, mine.stop - theirs.start)
            for mine, theirs in zip(
                (self.slices, self.rows, self.cols),
                (outer.slices, outer.rows, outer.cols),
                strict=True,
            )
        )


def _brain_fraction(head: _Head, scale, image_size: int):
    """Brain radius / head radius for slices of relative size ``scale``."""
    mean_radius_px = (head.semi_x + head.semi_y) * scale * (image_size / 4.0)
    return 1.0 - (head.scalp + head.bone + head.csf) / mean_radius_px


def _pixel_box(
    head: _Head,
    slices: slice,
    image_size: int,
    u_range: tuple[float, float],
    v_range: tuple[float, float],
    in_brain: bool = True,
) -> tuple[slice, slice]:
    """Rows and columns of the pixel rectangle that holds, on every one of ``slices``, the box
    ``u_range x v_range`` of brain coordinates (of head coordinates if not ``in_brain``)."""
    scale = head.scale[slices].astype(np.float64)
    factor = _brain_fraction(head, scale, image_size) if in_brain else 1.0
    u = np.asarray(u_range)[:, None, None] * (factor * head.semi_x * scale)
    v = np.asarray(v_range)[None, :, None] * (factor * head.semi_y * scale)
    cos, sin = math.cos(head.tilt), math.sin(head.tilt)
    # Inverse of the mapping in _geometry, at the four corners of the box.
    x = cos * u - sin * v + head.centre_x
    y = sin * u + cos * v + head.centre_y[slices]

    def span(coordinate: np.ndarray) -> slice:
        pixels = (coordinate + 1.0) * (image_size / 2.0) - 0.5
        start = min(image_size, max(0, math.floor(pixels.min()) - 2))
        return slice(start, max(start, min(image_size, math.ceil(pixels.max()) + 3)))

    return span(y), span(x)


def _geometry(head: _Head, window: _Window, image_size: int) -> dict:
    """Where the pixels of ``window`` lie in the head, as float32 (n, h, w) arrays.

    ``depth``: pixels inward from the head outline (< 0 outside the head); ``u``, ``v``: brain
    coordinates (v points to the back of the head); ``r``: brain radius, following the
    irregular outline; ``theta``: polar angle.
    """
    scale = head.scale[window.slices, None, None]
    semi_x, semi_y = head.semi_x * scale, head.semi_y * scale
    axis = (np.arange(image_size, dtype=np.float32) + 0.5) * (2.0 / image_size) - 1.0
    x = axis[None, None, window.cols] - head.centre_x
    y = axis[None, window.rows, None] - head.centre_y[window.slices, None, None]
    cos, sin = math.cos(head.tilt), math.sin(head.tilt)
    u = (cos * x + sin * y) / semi_x
    v = (cos * y - sin * x) / semi_y
    theta = np.arctan2(v, u)
    wobble = np.ones_like(theta)
    for order, amplitude, phase in head.wobble:
        wobble += amplitude * np.cos(order * theta + phase)
    radius = np.sqrt(u * u + v * v) / wobble

    brain_fraction = _brain_fraction(head, scale, image_size)
    return {
        "depth": (1.0 - radius) * ((semi_x + semi_y) * (image_size / 4.0)),
        "u": u / brain_fraction,
        "v": v / brain_fraction,
        "r": radius / brain_fraction,
        "theta": theta,
    }


def _upsample(coarse: np.ndarray, window: _Window, image_size: int) -> np.ndarray:
    """Smooth noise on ``window``, float32 (n, h, w): cubic interpolation of the coarse grid
    to the full image; its features are about ``image_size / cells`` pixels wide."""
    pieces = []
    # Slices are channels to cv2.resize, which takes at most 512 of them.
    for first in range(window.slices.start, window.slices.stop, 256):
        stack = np.ascontiguousarray(coarse[:, :, first : min(first + 256, window.slices.stop)])
        full = cv2.resize(stack, (image_size, image_size), interpolation=cv2.INTER_CUBIC)
        # cv2 drops the channel axis of single-channel images.
        pieces.append(full.reshape(image_size, image_size, -1)[window.rows, window.cols])
    return np.moveaxis(np.concatenate(pieces, axis=2), 2, 0)


def _render_cortex(cortex: _Cortex, geometry: dict, window: _Window, image_size: int) -> tuple:
    """Alpha maps of cortical grey matter and of CSF in the sulci.

    Sulci are the zero lines of smooth noise, which wind like real sulci; they cut from the
    surface partway into the brain and are lined with a ribbon of grey matter.
    """
    r = geometry["r"]
    folds = np.abs(_upsample(cortex.folds, window, image_size))
    outer_band = _ramp(r, cortex.reach, cortex.reach + 0.2)
    width = cortex.sulcus_width
    sulcus = _ramp(folds, width, 0.0) * outer_band
    ribbon = _ramp(folds, width + 0.45, width + 0.15) * outer_band
    return np.maximum(ribbon, _ramp(r, 0.86, 0.93)), sulcus


def _render_deep(
    deep: _Deep, head: _Head, geometry: dict, window: _Window, image_size: int
) -> tuple:
    """Alpha maps of the lateral ventricles (CSF) and deep grey nuclei, and a FLAIR boost of
    periventricular hyperintensity (caps at the horn tips, a thin halo)."""
    maps = tuple(np.zeros_like(geometry["u"]) for _ in range(3))
    # All of it lies within 0.6 of the ventricles' centre line (see the sizes below).
    box = _pixel_box(
        head, window.slices, image_size, (-0.6, 0.6), (deep.offset - 0.6, deep.offset + 0.6)
    )
    local = window.intersect(window.slices, *box)
    amount = deep.presence[window.slices, None, None]
    if local is None or not amount.any():
        return maps
    index = local.inside(window)
    u, v = geometry["u"][index], geometry["v"][index]
    ventricles, nuclei, bright = (values[index] for values in maps)

    long_axis = 0.30 * deep.size * np.sqrt(amount) + 1e-3
    short_axis = 0.075 * deep.size * amount**0.7 + 1e-3
    for side in (-1.0, 1.0):
        # Long axis front-to-back; as in real axial slices the two are close together at the
        # front (frontal horns) and diverge towards the back.
        angle = math.pi / 2 - side * deep.splay
        centre = (side * deep.spacing, deep.offset)
        distance = _ellipse_distance(u, v, centre, (long_axis, short_axis), angle)
        np.maximum(ventricles, _ramp(distance, 1.0, 0.8), out=ventricles)
        if deep.halo_strength:
            halo = _ramp(np.abs(distance - 1.15), 0.2, 0.05)
            np.maximum(bright, deep.halo_strength * halo, out=bright)
        nucleus_centre = (side * (deep.spacing + 0.22), deep.offset + 0.08)
        nucleus_radii = (0.17 * amount + 1e-3, 0.1 * amount + 1e-3)
        nucleus = _ellipse_distance(u, v, nucleus_centre, nucleus_radii, math.pi / 2 + side * 0.3)
        np.maximum(nuclei, 0.7 * _ramp(nucleus, 1.0, 0.6), out=nuclei)
        if deep.cap_strength:
            for end in (-1.0, 1.0):  # frontal and occipital horn
                tip = (
                    centre[0] + end * 0.9 * long_axis * math.cos(angle),
                    centre[1] + end * 0.9 * long_axis * math.sin(angle),
                )
                cap = _ellipse_distance(u, v, tip, (deep.cap_size, 0.7 * deep.cap_size))
                np.maximum(bright, deep.cap_strength * _ramp(cap, 1.2, 0.5), out=bright)
    bright *= 1.0 - ventricles
    return maps


def _render_spots(
    spots: list[_Spot], head: _Head, geometry: dict, window: _Window, image_size: int
) -> np.ndarray:
    """FLAIR boost of small bright white-matter spots (not tumour)."""
    boost = np.zeros_like(geometry["u"])
    for spot in spots:
        slices = slice(
            math.floor(spot.z_centre - spot.z_radius), math.ceil(spot.z_centre + spot.z_radius) + 1
        )
        (centre_u, centre_v), size = spot.centre, spot.size
        box = _pixel_box(
            head,
            window.slices,
            image_size,
            (centre_u - size, centre_u + size),
            (centre_v - size, centre_v + size),
        )
        local = window.intersect(slices, *box)
        if local is None:
            continue
        index = local.inside(window)
        z = np.arange(local.slices.start, local.slices.stop, dtype=np.float32)[:, None, None]
        planar = _ellipse_distance(
            geometry["u"][index], geometry["v"][index], spot.centre, (size, size)
        )
        distance = np.sqrt(planar * planar + ((z - spot.z_centre) / spot.z_radius) ** 2)
        np.maximum(boost[index], spot.strength * _ramp(distance, 1.0, 0.5), out=boost[index])
    return boost


def _render_streak(streak: _Streak | None, geometry: dict, window: _Window) -> np.ndarray:
    """FLAIR boost of a bright curved line along the cortex on a run of slices, like sulcal
    FLAIR hyperintensity or flow artefact next to the skull in real scans."""
    boost = np.zeros_like(geometry["r"])
    if streak is None:
        return boost
    local = window.intersect(slice(streak.first, streak.last), window.rows, window.cols)
    if local is None:
        return boost
    index = local.inside(window)
    r, theta = geometry["r"][index], geometry["theta"][index]
    along = np.mod(theta - streak.start, 2 * math.pi)
    arc = _ramp(along, 0.0, 0.1) * _ramp(along, streak.span, streak.span - 0.1)
    line = _ramp(np.abs(r - streak.band - 0.015 * np.sin(9.0 * theta)), 0.035, 0.01)
    boost[index] = streak.strength * arc * line
    return boost


def _tumour_window(tumour: _Tumour, head: _Head, num_slices: int, image_size: int) -> _Window:
    """The box of voxels the tumour can reach."""
    reach = 1.0 + tumour.roughness  # noise pushes the outline out to this many lobe radii
    centre_u, centre_v, centre_z, along, across, radius_z, _ = np.array(tumour.lobes).T
    extent = reach * np.maximum(along, across)
    first = max(0, math.floor(np.min(centre_z - reach * radius_z)))
    last = min(num_slices, math.ceil(np.max(centre_z + reach * radius_z)) + 1)
    u_range = (np.min(centre_u - extent), np.max(centre_u + extent))
    v_range = (np.min(centre_v - extent), np.max(centre_v + extent))
    slices = slice(first, last)
    return _Window(slices, *_pixel_box(head, slices, image_size, u_range, v_range))


def _tumour_field(
    tumour: _Tumour, head: _Head, num_slices: int, image_size: int
) -> tuple[_Window, np.ndarray]:
    """'Insideness' of the tumour, tumour where > 0, on the box of voxels it can reach.

    The union of the lobes (ellipsoids) with the outline perturbed by smooth 3-D noise and kept
    off the brain surface (these tumours are intra-axial). Rendered for the whole volume at
    once, so that slices cut off from the bulk of the tumour by tumour-free ones can be
    cleared: the tumour spans one run of consecutive slices. Returns the box and the field,
    float32 (n, h, w).
    """
    window = _tumour_window(tumour, head, num_slices, image_size)
    geometry = _geometry(head, window, image_size)
    u, v = geometry["u"], geometry["v"]
    z = np.arange(window.slices.start, window.slices.stop, dtype=np.float32)[:, None, None]
    nearest = np.full_like(u, np.inf)
    for centre_u, centre_v, centre_z, along, across, radius_z, angle in tumour.lobes:
        distance = _ellipse_distance(u, v, (centre_u, centre_v), (along, across), angle)
        squared = distance * distance + ((z - centre_z) * (1.0 / radius_z)) ** 2
        np.minimum(nearest, squared, out=nearest)
    field = 1.0 - np.sqrt(nearest)
    # The coarse noise is standardised; clipping at 2.5 sigma bounds the outline's
    # perturbation by the roughness.
    noise = np.clip(_upsample(tumour.shape_noise, window, image_size), -2.5, 2.5)
    field += (tumour.roughness / 2.5) * noise
    np.minimum(field, (0.92 - geometry["r"]) * 4.0, out=field)

    strongest = field.max(axis=(1, 2))
    first = last = int(np.argmax(strongest))
    while first > 0 and strongest[first - 1] > 0.0:
        first -= 1
    while last + 1 < len(strongest) and strongest[last + 1] > 0.0:
        last += 1
    field[:first] = -1.0
    field[last + 1 :] = -1.0
    return window, field


def _render_tumour_intensity(
    tumour: _Tumour, field: np.ndarray, window: _Window, image_size: int, tissue: dict
) -> list[np.ndarray]:
    """Per channel, the tumour's intensity: bright on FLAIR, hypo- to mildly hyperintense on
    T1, heterogeneous; sometimes with a dark cystic core, sometimes a rim enhancing on post."""
    texture = _upsample(tumour.texture, window, image_size)
    heterogeneity = (0.05, 0.12, 0.05)
    core = tumour.cyst * _ramp(field, 0.45, 0.65) if tumour.cyst else None
    channels = []
    for channel in range(3):
        white_matter = float(tissue["white_matter"][channel])
        value = (
            white_matter
            * (1.0 + float(tumour.change[channel]))
            * (1.0 + heterogeneity[channel] * texture)
        )
        if core is not None:
            value += core * (1.6 * float(tissue["csf"][channel]) - value)
        if tumour.rim and channel == POST:
            rim = _ramp(field, 0.0, 0.05) * _ramp(field, 0.25, 0.12)
            value += rim * (tumour.rim * white_matter)
        channels.append(value)
    return channels


def _bias_field(coefficients: tuple, window: _Window, num_slices: int, image_size: int):
    """Smooth multiplicative coil-sensitivity field around 1, broadcastable to the window."""
    a, b, c, d, e = coefficients
    axis = np.linspace(-1.0, 1.0, image_size, dtype=np.float32)
    x, y = axis[None, None, window.cols], axis[None, window.rows, None]
    z = np.linspace(-1.0, 1.0, num_slices, dtype=np.float32)[window.slices, None, None]
    return (1.0 + a * x + b * y + c * x * y + d * (x * x + y * y - 0.66)) * (1.0 + e * z)


@dataclass(frozen=True)
class _Patient:
    head: _Head
    cortex: _Cortex
    deep: _Deep
    spots: list
    streak: _Streak | None
    tumour: _Tumour
    tumour_box: _Window  # the voxels the tumour can reach, and its field there (see
    tumour_field: np.ndarray  # _tumour_field), rendered before the rest
    scanner: _Scanner


def _render(
    patient: _Patient, slices: slice, num_slices: int, image_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``slices``: uint8 images (n, H, W, 3) and boolean tumour masks (n, H, W)."""
    num = slices.stop - slices.start
    whole_image = slice(0, image_size)
    volume = np.zeros((num, image_size, image_size, 3), dtype=np.uint8)
    mask = np.zeros((num, image_size, image_size), dtype=bool)
    head, tissue = patient.head, patient.scanner.tissue
    # Outside the head everything is 0: only render the rectangle around it.
    reach = 1.0 + sum(amplitude for _, amplitude, _ in head.wobble)
    window = _Window(
        slices,
        *_pixel_box(head, slices, image_size, (-reach, reach), (-reach, reach), in_brain=False),
    )
    geometry = _geometry(head, window, image_size)
    depth = geometry["depth"]

    grey, sulcus = _render_cortex(patient.cortex, geometry, window, image_size)
    ventricles, nuclei, periventricular = _render_deep(
        patient.deep, head, geometry, window, image_size
    )
    np.maximum(grey, nuclei, out=grey)
    csf = np.maximum(sulcus, ventricles)
    lesions = _render_spots(patient.spots, head, geometry, window, image_size)
    np.maximum(lesions, periventricular, out=lesions)
    np.maximum(lesions, _render_streak(patient.streak, geometry, window), out=lesions)
    texture = _upsample(patient.cortex.texture, window, image_size)
    shading = 1.0 + patient.cortex.texture_strength * texture

    box = patient.tumour_box
    tumour_window = window.intersect(box.slices, box.rows, box.cols)
    if tumour_window is not None:
        index = tumour_window.inside(window)
        field = patient.tumour_field[tumour_window.inside(box)]
        tumour_mask = field > 0.0
        tumour_values = _render_tumour_intensity(
            patient.tumour, field, tumour_window, image_size, tissue
        )
        # Partial volume: the painted lesion fades out over about a pixel at its border.
        stack = np.moveaxis(tumour_mask, 0, 2).astype(np.float32)
        blurred = cv2.GaussianBlur(stack, (0, 0), 0.7).reshape(stack.shape)
        tumour_alpha = np.maximum(np.moveaxis(blurred, 2, 0), tumour_mask)
        mask[tumour_window.inside(_Window(slices, whole_image, whole_image))] = tumour_mask

    # From the outside in: scalp (fat, bright on T1), skull bone (dark), CSF, then brain.
    bone_start = head.scalp
    csf_start = bone_start + head.bone
    brain_start = csf_start + head.csf
    to_bone = _ramp(depth, bone_start - 0.5, bone_start + 0.5)
    to_csf = _ramp(depth, csf_start - 0.5, csf_start + 0.5)
    to_brain = _ramp(depth, brain_start - 0.5, brain_start + 0.5)
    inside_head = depth > 0.0

    for channel in range(3):
        value = {name: float(intensity[channel]) for name, intensity in tissue.items()}
        brain = value["white_matter"] + (value["grey_matter"] - value["white_matter"]) * grey
        brain += (value["csf"] - brain) * csf
        brain *= 1.0 + LESION_EFFECT[channel] * lesions
        if tumour_window is not None:
            brain[index] += (tumour_values[channel] - brain[index]) * tumour_alpha
        image = value["scalp"] + (value["bone"] - value["scalp"]) * to_bone
        image += (value["csf"] - image) * to_csf
        image += (brain - image) * to_brain
        image *= shading
        image *= _bias_field(patient.scanner.bias[channel], window, num_slices, image_size)
        # Magnitude images: the noise is folded at zero (approximately Rician).
        image += patient.scanner.noise_sigma[channel] * _gaussian_noise(rng, image.shape)
        np.abs(image, out=image)
        np.minimum(image, 255.0, out=image)
        image *= inside_head  # the real data has an exactly black background
        volume[:, window.rows, window.cols, channel] = image + 0.5  # rounds; the cast truncates
    return volume, mask


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def synthesize_patient(
    rng: np.random.Generator, *, num_slices: int, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fabricate one patient's volume and tumour mask.

    Args:
        rng: the source of randomness; the result depends only on its state.
        num_slices: number of axial slices S (at least 5).
        image_size: height and width H = W in pixels (a multiple of 8, at least 32).

    Returns:
        ``(volume, mask)``: ``volume`` is uint8 (S, H, W, 3) with channels in dataset order
        (pre-contrast, FLAIR, post-contrast) and exactly 0 outside the head; ``mask`` is uint8
        (S, H, W) with values 0 (background) or 255 (tumour). The tumour spans a run of
        consecutive slices and is never empty.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    num_slices = _check_num_slices(num_slices)
    image_size = _check_image_size(image_size)

    head = _plan_head(rng, num_slices, image_size)
    cortex = _plan_cortex(rng, num_slices, image_size)
    deep = _plan_deep(rng, num_slices)
    spots = _plan_spots(rng, num_slices)
    streak = _plan_streak(rng, num_slices)
    tumour = _plan_tumour(rng, head, num_slices, image_size)
    tumour_box, tumour_field = _tumour_field(tumour, head, num_slices, image_size)
    patient = _Patient(
        head, cortex, deep, spots, streak, tumour, tumour_box, tumour_field, _plan_scanner(rng)
    )
    volume = np.empty((num_slices, image_size, image_size, 3), dtype=np.uint8)
    mask = np.empty((num_slices, image_size, image_size), dtype=np.uint8)
    step = max(1, CHUNK_PIXELS // (image_size * image_size))
    for first in range(0, num_slices, step):
        slices = slice(first, min(num_slices, first + step))
        volume[slices], tumour = _render(patient, slices, num_slices, image_size, rng)
        mask[slices] = tumour * np.uint8(255)
    return volume, mask


def patient_folder_name(index: int) -> str:
    """Folder name of the 1-based ``index``-th patient, e.g. 1 -> ``SYN_AA_0001_20000101``."""
    return f"SYN_{SITES[(index - 1) % len(SITES)]}_{index:04d}_{SCAN_DATE}"


def _write_patient(folder: pathlib.Path, volume: np.ndarray, mask: np.ndarray) -> None:
    folder.mkdir()
    for number, (image, label) in enumerate(zip(volume, mask, strict=True), start=1):
        stem = folder / f"{folder.name}_{number}"
        # cv2 writes BGR: reverse the channels so that reading back and reversing again gives
        # (pre-contrast, FLAIR, post-contrast).
        _write_tiff(pathlib.Path(f"{stem}.tif"), np.ascontiguousarray(image[..., ::-1]))
        _write_tiff(pathlib.Path(f"{stem}_mask.tif"), label)


def _write_tiff(path: pathlib.Path, image: np.ndarray) -> None:
    # Lossless PackBits: about 7x faster to write than OpenCV's default LZW, files ~15% larger.
    if not cv2.imwrite(str(path), image, TIFF_OPTIONS):
        raise OSError(f"OpenCV could not write {path}")


def generate_dataset(
    out_dir: str | pathlib.Path,
    *,
    num_patients: int = 20,
    seed: int = 0,
    image_size: int = 256,
    slices_per_patient: tuple[int, int] = (20, 40),
    progress: bool = True,
) -> pathlib.Path:
    """Write a synthetic LGG-like dataset to ``out_dir/kaggle_3m`` and return that folder.

    Patient ``i`` (1-based) goes to ``SYN_<site>_<i:04d>_20000101/``, the site cycling over
    ``SITES``. Its slices are ``<folder>_<n>.tif`` (H x W x 3 uint8; BGR on disk, i.e.
    (pre-contrast, FLAIR, post-contrast) once reversed) and ``<folder>_<n>_mask.tif``
    (H x W uint8, 0 or 255), n = 1..slices. ``data.csv`` has one row per patient: Patient
    (folder name without the date), site, slices, tumour_slices.

    Args:
        out_dir: parent folder, created if needed; ``out_dir/kaggle_3m`` must be absent or empty.
        num_patients: number of patients, at least 1.
        seed: non-negative; the same seed always gives byte-identical files. Patient i draws
            from ``numpy.random.default_rng([seed, i])`` and so does not depend on the others.
        image_size: height = width of every slice; a multiple of 8, at least 32.
        slices_per_patient: inclusive range (low, high) of slices per patient, 5 <= low <= high.
        progress: show a tqdm progress bar over patients.

    Raises:
        ValueError: for an invalid argument (the message quotes it).
        FileExistsError: if ``out_dir/kaggle_3m`` already has content.
    """
    num_patients = _as_int(num_patients, "num_patients")
    if num_patients < 1:
        raise ValueError(f"num_patients must be at least 1, got {num_patients!r}")
    seed = _as_int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed!r}")
    image_size = _check_image_size(image_size)
    low, high = _check_slice_range(slices_per_patient)

    root = pathlib.Path(out_dir) / "kaggle_3m"
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} already exists and is not empty; choose an empty output folder or delete it"
        )
    root.mkdir(parents=True, exist_ok=True)

    rows = []
    patients = tqdm(
        range(1, num_patients + 1),
        desc="Synthesising patients",
        unit="patient",
        disable=not progress,
    )
    for index in patients:
        rng = np.random.default_rng([seed, index])
        num_slices = int(rng.integers(low, high + 1))
        volume, mask = synthesize_patient(rng, num_slices=num_slices, image_size=image_size)
        folder = patient_folder_name(index)
        _write_patient(root / folder, volume, mask)
        tumour_slices = int(np.count_nonzero(mask.any(axis=(1, 2))))
        site = SITES[(index - 1) % len(SITES)]
        rows.append((folder.rsplit("_", 1)[0], site, num_slices, tumour_slices))

    with open(root / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    return root
