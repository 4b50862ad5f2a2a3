"""Deterministic synthetic LGG-like brain MRI, written in the Kaggle ``kaggle_3m`` layout.

The course trains on the LGG segmentation dataset of Buda et al. (Kaggle
``mateuszbuda/lgg-mri-segmentation``). This module fabricates a stand-in with the same files, so
that every notebook and test runs offline:

    OUT_DIR/kaggle_3m/data.csv                         Patient,site,slices,tumour_slices
    OUT_DIR/kaggle_3m/<folder>/<folder>_<n>.tif        n = 1..slices, 3 x uint8
    OUT_DIR/kaggle_3m/<folder>/<folder>_<n>_mask.tif   1 x uint8, exactly 0 or 255

with ``<folder> = SYN_<site>_<i:04d>_20000101``. As in the real dataset the three channels are
(pre-contrast, FLAIR, post-contrast); OpenCV stores them reversed (BGR), so
``cv2.imread(path, cv2.IMREAD_UNCHANGED)[..., ::-1]`` gives them back in dataset order.

The images are meant to be a real, if easy, learning problem: a head with scalp, skull,
cerebrospinal fluid, folded cortex and ventricles; texture, bias field, noise and contrast that
change between patients; an irregular 3-D tumour that is bright on FLAIR; and bright FLAIR spots
that are *not* tumour, so that thresholding FLAIR does not solve the task.
"""

from __future__ import annotations

import csv
import operator
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np
from tqdm.auto import tqdm

__all__ = ["CHANNELS", "SITES", "generate_dataset", "patient_folder_name", "synthesize_patient"]

CHANNELS = ("pre-contrast", "FLAIR", "post-contrast")
SITES = ("AA", "BB", "CC")
SCAN_DATE = "20000101"
CSV_COLUMNS = ("Patient", "site", "slices", "tumour_slices")

MIN_IMAGE_SIZE = 32
# Fewer slices than this leave no room for a tumour run with tumour-free slices around it.
MIN_SLICES = 5

# Mean tissue intensities on a 0..255 scale, in channel order (pre-contrast, FLAIR, post-contrast).
# Roughly what the real data shows: fat in the scalp is bright on T1, CSF is dark everywhere,
# grey matter is a little darker than white matter on T1 and a little brighter on FLAIR.
WHITE_MATTER = np.array([125.0, 88.0, 128.0], dtype=np.float32)
GREY_MATTER = np.array([102.0, 108.0, 106.0], dtype=np.float32)
CSF = np.array([38.0, 26.0, 44.0], dtype=np.float32)
BONE = np.array([22.0, 18.0, 28.0], dtype=np.float32)
SCALP = np.array([185.0, 130.0, 200.0], dtype=np.float32)

FLAIR = CHANNELS.index("FLAIR")


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _as_int(value, name: str) -> int:
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
        f"slices_per_patient must be a pair (low, high) of integers with "
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
# small numeric helpers
# --------------------------------------------------------------------------------------------


def _smoothstep(values: np.ndarray, edge0: float, edge1: float) -> np.ndarray:
    """0 below edge0, 1 above edge1, a smooth ramp between (edges may be reversed)."""
    t = np.clip((values - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blend(base: np.ndarray, value: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite ``value`` over ``base``; alpha is (S, H, W), images are (S, H, W, 3)."""
    return base + alpha[..., None] * (value - base)


def _resize_stack(stack: np.ndarray, image_size: int) -> np.ndarray:
    """Resize a (h, w, C) stack of channels to (image_size, image_size, C) with cubic splines."""
    # cv2 handles at most 512 channels per call and drops the axis when there is only one.
    chunks = []
    for start in range(0, stack.shape[2], 256):
        chunk = cv2.resize(
            stack[:, :, start : start + 256],
            (image_size, image_size),
            interpolation=cv2.INTER_CUBIC,
        )
        chunks.append(chunk.reshape(image_size, image_size, -1))
    return np.concatenate(chunks, axis=2)


def _smooth_noise(
    rng: np.random.Generator,
    num_slices: int,
    image_size: int,
    cells: int,
    z_sigma: float,
) -> np.ndarray:
    """Low-pass noise, float32 (S, H, W), zero mean and unit standard deviation.

    White noise on a coarse ``cells x cells`` grid per slice, smoothed across slices so that
    neighbouring slices look alike (as in a real volume), then interpolated to full size.
    """
    coarse = rng.standard_normal((cells * cells, num_slices), dtype=np.float32)
    if z_sigma > 0:
        # A (k, 1) kernel blurs along the columns only, i.e. along the slice axis.
        coarse = cv2.GaussianBlur(coarse, (2 * int(3 * z_sigma) + 1, 1), z_sigma)
    full = _resize_stack(coarse.reshape(cells, cells, num_slices), image_size)
    full = np.moveaxis(full, 2, 0)
    full -= full.mean()
    full /= full.std() + 1e-6
    return full


def _ellipse_distance(
    u: np.ndarray, v: np.ndarray, centre: tuple[float, float], radii: tuple, angle: float = 0.0
) -> np.ndarray:
    """Normalised distance to an (optionally rotated) ellipse centre: < 1 inside, 1 on the rim."""
    du, dv = u - centre[0], v - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    along, across = cos * du + sin * dv, -sin * du + cos * dv
    return np.sqrt((along / radii[0]) ** 2 + (across / radii[1]) ** 2)


def _random_harmonics(rng: np.random.Generator, orders: range, amplitude: float) -> np.ndarray:
    """Coefficients (order, amplitude, phase) of a random smooth periodic function of angle."""
    orders_arr = np.asarray(list(orders), dtype=np.float32)
    amplitudes = amplitude * rng.uniform(0.3, 1.0, orders_arr.size) / orders_arr
    phases = rng.uniform(0.0, 2 * np.pi, orders_arr.size)
    return np.stack([orders_arr, amplitudes, phases], axis=1).astype(np.float32)


def _evaluate_harmonics(coefficients: np.ndarray, theta: np.ndarray) -> np.ndarray:
    total = np.zeros_like(theta)
    for order, amplitude, phase in coefficients:
        total += amplitude * np.cos(order * theta + phase)
    return total


# --------------------------------------------------------------------------------------------
# anatomy
# --------------------------------------------------------------------------------------------


def _slice_scale(num_slices: int) -> np.ndarray:
    """Relative head size per slice, float32 (S,): smaller at the skull base and the vertex."""
    position = (np.arange(num_slices, dtype=np.float32) + 0.5) / num_slices
    # An off-centre sphere profile: the vertex (last slices) narrows faster than the base.
    return np.sqrt(np.clip(1.0 - ((position - 0.45) / 0.64) ** 2, 0.12, 1.0))


def _head_geometry(rng: np.random.Generator, num_slices: int, image_size: int) -> dict:
    """Coordinates of the head for every pixel of every slice, all float32 (S, H, W).

    Returns ``depth`` (pixels inward from the outline, < 0 outside the head), ``brain_u`` and
    ``brain_v`` (coordinates in which the brain is the unit disc), ``brain_r`` (their radius,
    corrected for the wobbly outline), ``theta`` (polar angle) and the layer thicknesses.
    """
    scale = _slice_scale(num_slices)[:, None, None]
    semi_x = rng.uniform(0.66, 0.78) * scale  # left-right, as a fraction of half the image
    semi_y = rng.uniform(0.80, 0.90) * scale  # anterior-posterior: heads are longer than wide
    tilt = rng.uniform(-0.15, 0.15)
    centre_x = rng.uniform(-0.04, 0.04)
    # The head drifts a little from slice to slice, as patients are never perfectly aligned.
    centre_y = rng.uniform(-0.04, 0.04) + np.linspace(
        0.0, rng.uniform(-0.05, 0.05), num_slices, dtype=np.float32
    )[:, None, None]

    axis = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size * 2.0 - 1.0
    x = axis[None, None, :] - centre_x
    y = axis[None, :, None] - centre_y
    u = np.cos(tilt) * x + np.sin(tilt) * y
    v = -np.sin(tilt) * x + np.cos(tilt) * y
    theta = np.arctan2(v / semi_y, u / semi_x)
    wobble = 1.0 + _evaluate_harmonics(_random_harmonics(rng, range(2, 6), 0.05), theta)
    radius = np.sqrt((u / semi_x) ** 2 + (v / semi_y) ** 2) / wobble

    mean_radius_px = (semi_x + semi_y) / 2.0 * image_size / 2.0
    depth = (1.0 - radius) * mean_radius_px
    scalp = rng.uniform(0.018, 0.026) * image_size
    bone = rng.uniform(0.012, 0.018) * image_size
    csf = rng.uniform(0.006, 0.012) * image_size
    brain_fraction = 1.0 - (scalp + bone + csf) / mean_radius_px
    return {
        "depth": depth.astype(np.float32),
        "brain_u": (u / (semi_x * brain_fraction)).astype(np.float32),
        "brain_v": (v / (semi_y * brain_fraction)).astype(np.float32),
        "brain_r": (radius / brain_fraction).astype(np.float32),
        "theta": theta.astype(np.float32),
        "scalp": scalp,
        "bone": bone,
        "csf": csf,
    }


def _cortex(rng: np.random.Generator, geometry: dict, num_slices: int) -> tuple:
    """Grey-matter and sulcal-CSF alpha maps, float32 (S, H, W), of a folded cortex."""
    brain_r, theta = geometry["brain_r"], geometry["theta"]
    position = np.linspace(0.0, 1.0, num_slices, dtype=np.float32)[:, None, None]
    gyri = rng.integers(9, 15)
    # The folding pattern drifts with the angle and the slice so gyri are not evenly spaced.
    phase = gyri * theta + _evaluate_harmonics(
        _random_harmonics(rng, range(1, 5), 3.0), theta + 2.0 * position
    )
    inner_edge = 0.78 + 0.06 * np.sin(phase)
    grey = _smoothstep(brain_r, inner_edge - 0.03, inner_edge + 0.03)
    sulcus_width = rng.uniform(0.08, 0.16)
    sulcus = _smoothstep(np.abs(np.cos(phase / 2.0)), sulcus_width, 0.0)
    sulcus *= _smoothstep(brain_r, inner_edge + 0.02, inner_edge + 0.1)
    return grey, sulcus


def _ventricle_layout(rng: np.random.Generator, num_slices: int) -> dict:
    """Size, spacing and splay of the lateral ventricles; they exist only in central slices."""
    position = (np.arange(num_slices, dtype=np.float32) + 0.5) / num_slices
    peak = rng.uniform(0.48, 0.6)
    presence = np.clip((np.exp(-(((position - peak) / 0.16) ** 2)) - 0.2) / 0.8, 0.0, 1.0)
    return {
        "presence": presence,
        "size": rng.uniform(0.7, 1.3),  # enlarged ventricles are common in older patients
        "spacing": rng.uniform(0.08, 0.13),
        "splay": rng.uniform(0.15, 0.4),
        "offset": rng.uniform(-0.1, 0.05),
    }


def _ventricle_shapes(layout: dict) -> list[tuple]:
    """Per slice list of (centre, radii, angle) of both ventricles, or None where absent."""
    shapes = []
    for presence in layout["presence"]:
        if presence <= 0.0:
            shapes.append(None)
            continue
        radii = (0.30 * layout["size"] * presence**0.5, 0.06 * layout["size"] * presence**0.7)
        pair = []
        for side in (-1.0, 1.0):
            centre = (side * layout["spacing"], layout["offset"])
            # The long axis points front-to-back (v), tilted outward at the front.
            angle = np.pi / 2 - side * layout["splay"]
            pair.append((centre, radii, angle))
        shapes.append(pair)
    return shapes


def _ventricles(geometry: dict, shapes: list) -> np.ndarray:
    """CSF alpha map, float32 (S, H, W), of the two lateral ventricles."""
    u, v = geometry["brain_u"], geometry["brain_v"]
    alpha = np.zeros_like(u)
    for index, pair in enumerate(shapes):
        if pair is None:
            continue
        for centre, radii, angle in pair:
            distance = _ellipse_distance(u[index], v[index], centre, radii, angle)
            alpha[index] = np.maximum(alpha[index], _smoothstep(distance, 1.0, 0.75))
    return alpha


def _periventricular_caps(rng: np.random.Generator, geometry: dict, shapes: list) -> np.ndarray:
    """FLAIR boost (S, H, W) at the ventricle tips, a common non-tumour hyperintensity."""
    u, v = geometry["brain_u"], geometry["brain_v"]
    boost = np.zeros_like(u)
    strength = rng.uniform(0.25, 0.8) if rng.random() < 0.85 else 0.0
    cap_size = rng.uniform(0.05, 0.09)
    for index, pair in enumerate(shapes):
        if pair is None or strength == 0.0:
            continue
        for centre, radii, angle in pair:
            for end in (-1.0, 1.0):  # frontal and occipital horn
                tip = (
                    centre[0] + end * 0.9 * radii[0] * np.cos(angle),
                    centre[1] + end * 0.9 * radii[0] * np.sin(angle),
                )
                distance = _ellipse_distance(u[index], v[index], tip, (cap_size, cap_size * 0.7))
                boost[index] = np.maximum(boost[index], strength * _smoothstep(distance, 1.2, 0.4))
    return boost


def _white_matter_spots(
    rng: np.random.Generator, geometry: dict, num_slices: int
) -> np.ndarray:
    """FLAIR boost (S, H, W) of a few small bright spots scattered in the white matter."""
    u, v = geometry["brain_u"], geometry["brain_v"]
    boost = np.zeros_like(u)
    for _ in range(rng.integers(2, 8)):
        angle, radius = rng.uniform(0, 2 * np.pi), 0.7 * np.sqrt(rng.random())
        centre = (radius * np.cos(angle), radius * np.sin(angle))
        size = rng.uniform(0.025, 0.07)
        z_centre, z_radius = rng.uniform(0, num_slices - 1), rng.uniform(0.6, 2.5)
        strength = rng.uniform(0.4, 1.0)
        first = max(0, int(np.floor(z_centre - z_radius)))
        last = min(num_slices, int(np.ceil(z_centre + z_radius)) + 1)
        for index in range(first, last):
            z_term = ((index - z_centre) / z_radius) ** 2
            distance = np.sqrt(_ellipse_distance(u[index], v[index], centre, (size, size)) ** 2
                               + z_term)
            boost[index] = np.maximum(boost[index], strength * _smoothstep(distance, 1.0, 0.5))
    return boost


def _cortical_streak(rng: np.random.Generator, geometry: dict, num_slices: int) -> np.ndarray:
    """FLAIR boost (S, H, W) of a bright curved line along the cortex on a run of slices.

    Mimics sulcal FLAIR hyperintensity / flow artefact next to the skull; present in about
    half of the patients.
    """
    boost = np.zeros_like(geometry["brain_r"])
    if rng.random() >= 0.5:
        return boost
    start = rng.uniform(-np.pi, np.pi)
    span = rng.uniform(0.4, 1.1)
    run = int(rng.integers(2, 7))
    first = int(rng.integers(0, max(1, num_slices - run)))
    strength = rng.uniform(0.45, 0.9)
    band = rng.uniform(0.88, 0.93)
    for index in range(first, min(num_slices, first + run)):
        r, theta = geometry["brain_r"][index], geometry["theta"][index]
        along = np.mod(theta - start, 2 * np.pi)
        arc = _smoothstep(along, 0.0, 0.1) * _smoothstep(along, span, span - 0.1)
        line = _smoothstep(np.abs(r - band - 0.015 * np.sin(9 * theta)), 0.03, 0.01)
        boost[index] = strength * arc * line
    return boost


# --------------------------------------------------------------------------------------------
# tumour
# --------------------------------------------------------------------------------------------


def _tumour_field(rng: np.random.Generator, geometry: dict, num_slices: int) -> np.ndarray:
    """Signed 'insideness' of an irregular 3-D tumour, float32 (S, H, W); tumour where > 0.

    A union of a few ellipsoids in brain coordinates (so it stays inside the brain on every
    slice), perturbed by smooth 3-D noise. The noise never exceeds the main ellipsoid's value
    at its centre, so every tumour contains at least its centre voxel.
    """
    u, v = geometry["brain_u"], geometry["brain_v"]
    in_plane = rng.uniform(0.14, 0.36)
    # About a third of the slices carry tumour on average, as in the real data (1373 / 3929).
    z_radius = max(1.0, rng.uniform(0.09, 0.2) * num_slices)
    angle = rng.uniform(0, 2 * np.pi)
    distance_from_centre = rng.uniform(0.0, max(0.05, 0.78 - in_plane))
    centre = (distance_from_centre * np.cos(angle), distance_from_centre * np.sin(angle))
    z_centre = rng.uniform(0.3, 0.68) * (num_slices - 1)

    lobes = [(centre, z_centre, in_plane * rng.uniform(0.75, 1.25, 2), z_radius, 0.0)]
    for _ in range(rng.integers(1, 4)):
        lobe_angle = rng.uniform(0, 2 * np.pi)
        reach = rng.uniform(0.3, 0.7) * in_plane
        lobe_centre = (centre[0] + reach * np.cos(lobe_angle), centre[1] + reach * np.sin(lobe_angle))
        lobe_z = z_centre + rng.uniform(-0.5, 0.5) * z_radius
        lobe_radii = in_plane * rng.uniform(0.35, 0.75, 2)
        lobes.append((lobe_centre, lobe_z, lobe_radii, z_radius * rng.uniform(0.4, 0.8), lobe_angle))

    slice_index = np.arange(num_slices, dtype=np.float32)[:, None, None]
    nearest = np.full_like(u, np.inf)
    for lobe_centre, lobe_z, radii, lobe_z_radius, lobe_angle in lobes:
        squared = _ellipse_distance(u, v, lobe_centre, tuple(radii), lobe_angle) ** 2
        squared += ((slice_index - lobe_z) / lobe_z_radius) ** 2
        np.minimum(nearest, squared, out=nearest)
    field = 1.0 - np.sqrt(nearest)

    noise = _smooth_noise(rng, num_slices, u.shape[1], cells=7, z_sigma=1.0)
    noise /= np.abs(noise).max() + 1e-6
    field += rng.uniform(0.2, 0.45) * noise
    # Keep a margin from the brain surface: tumours here are intra-axial.
    return np.minimum(field, (0.93 - geometry["brain_r"]) * 4.0).astype(np.float32)


def _tumour_appearance(rng: np.random.Generator, field: np.ndarray, mask: np.ndarray) -> tuple:
    """Tumour intensities (S, H, W, 3) and the alpha to paint them with, (S, H, W)."""
    texture = _smooth_noise(rng, field.shape[0], field.shape[1], cells=12, z_sigma=1.0)
    flair_boost = rng.uniform(0.3, 0.8)
    pre_change = rng.uniform(-0.3, 0.05)  # LGG is iso- to hypointense on T1
    values = np.empty(field.shape + (3,), dtype=np.float32)
    values[..., 0] = WHITE_MATTER[0] * (1.0 + pre_change + 0.05 * texture)
    values[..., FLAIR] = WHITE_MATTER[FLAIR] * (1.0 + flair_boost + 0.12 * texture)
    values[..., 2] = WHITE_MATTER[2] * (1.0 + pre_change + 0.05 * texture)

    if rng.random() < 0.25:
        # A cystic / necrotic core: darker on every channel but still part of the lesion mask.
        core = _smoothstep(field, 0.45, 0.65)[..., None]
        values = values + core * (CSF * 1.6 - values) * rng.uniform(0.4, 0.8)
    if rng.random() < 0.35:
        # Some tumours enhance at their rim after contrast.
        rim = (_smoothstep(field, 0.0, 0.05) * _smoothstep(field, 0.25, 0.12)).astype(np.float32)
        values[..., 2] += rim * WHITE_MATTER[2] * rng.uniform(0.35, 0.7)

    # Partial volume: the painted lesion fades out over about a pixel at its border.
    alpha = cv2.GaussianBlur(np.moveaxis(mask.astype(np.float32), 0, 2), (0, 0), 0.7)
    alpha = np.moveaxis(alpha.reshape(mask.shape[1], mask.shape[2], -1), 2, 0)
    return values, np.maximum(alpha, mask.astype(np.float32))


# --------------------------------------------------------------------------------------------
# acquisition
# --------------------------------------------------------------------------------------------


def _bias_field(rng: np.random.Generator, num_slices: int, image_size: int) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field, float32 (S, H, W, 3), around 1."""
    axis = np.linspace(-1.0, 1.0, image_size, dtype=np.float32)
    x, y = axis[None, None, :], axis[None, :, None]
    z = np.linspace(-1.0, 1.0, num_slices, dtype=np.float32)[:, None, None]
    channels = []
    for _ in CHANNELS:
        a, b, c, d, e = rng.uniform(-0.12, 0.12, 5)
        channels.append(1.0 + a * x + b * y + c * x * y + d * (x * x + y * y - 0.66) + e * z)
    return np.stack(np.broadcast_arrays(*channels), axis=-1).astype(np.float32)


def _acquire(rng: np.random.Generator, image: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Bias field, contrast, noise and quantisation: float image -> uint8 (S, H, W, 3)."""
    image = image * _bias_field(rng, image.shape[0], image.shape[1])
    gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    gamma = rng.uniform(0.85, 1.2, 3).astype(np.float32)
    image = 255.0 * np.power(np.clip(image, 0.0, None) / 255.0, gamma) * gain
    noise_sigma = rng.uniform(2.0, 5.0, 3).astype(np.float32)
    # Magnitude images: noise is folded at zero (approximately Rician).
    image = np.abs(image + noise_sigma * rng.standard_normal(image.shape, dtype=np.float32))
    image = np.rint(np.clip(image, 0.0, 255.0)).astype(np.uint8)
    image[~head] = 0  # the real data has an exactly black background
    return image


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
        ``(volume, mask)``: volume is uint8 of shape (S, H, W, 3) with channels in dataset order
        (pre-contrast, FLAIR, post-contrast); mask is uint8 of shape (S, H, W) with values 0
        (background) or 255 (tumour). The tumour is present on a run of consecutive slices
        and never empty.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    num_slices = _check_num_slices(num_slices)
    image_size = _check_image_size(image_size)

    geometry = _head_geometry(rng, num_slices, image_size)
    depth = geometry["depth"]
    head = depth > 0.0
    texture = _smooth_noise(rng, num_slices, image_size, cells=max(8, image_size // 6), z_sigma=0.7)
    texture_strength = rng.uniform(0.03, 0.07)
    tissue_contrast = rng.uniform(0.8, 1.2)  # how distinct grey and white matter look

    grey, sulcus = _cortex(rng, geometry, num_slices)
    ventricle_shapes = _ventricle_shapes(_ventricle_layout(rng, num_slices))
    ventricles = _ventricles(geometry, ventricle_shapes)
    flair_hyperintensity = np.maximum.reduce(
        [
            _periventricular_caps(rng, geometry, ventricle_shapes),
            _white_matter_spots(rng, geometry, num_slices),
            _cortical_streak(rng, geometry, num_slices),
        ]
    )

    shading = (1.0 + texture_strength * texture)[..., None]
    grey_matter = WHITE_MATTER + tissue_contrast * (GREY_MATTER - WHITE_MATTER)
    brain = np.broadcast_to(WHITE_MATTER * shading, texture.shape + (3,))
    brain = _blend(brain, grey_matter * shading, grey)
    brain = _blend(brain, CSF * shading, np.maximum(sulcus, ventricles))
    # Non-tumour lesions: bright on FLAIR, slightly dark on T1.
    brain = brain * (1.0 + flair_hyperintensity[..., None] * np.array([-0.1, 1.0, -0.05]))

    field = _tumour_field(rng, geometry, num_slices)
    mask = field > 0.0
    if not mask.any():  # possible only for a tiny tumour at a tiny image size
        mask = field >= field.max()
    tumour_values, tumour_alpha = _tumour_appearance(rng, field, mask)
    brain = _blend(brain, tumour_values, tumour_alpha)

    # Outside the brain, from the outside in: scalp (fat, bright), skull bone (dark), CSF.
    scalp_end = geometry["scalp"]
    bone_end = scalp_end + geometry["bone"]
    brain_start = bone_end + geometry["csf"]
    image = np.broadcast_to(SCALP * shading, brain.shape)
    image = _blend(image, BONE * shading, _smoothstep(depth, scalp_end - 0.6, scalp_end + 0.6))
    image = _blend(image, CSF * shading, _smoothstep(depth, bone_end - 0.6, bone_end + 0.6))
    image = _blend(image, brain, _smoothstep(depth, brain_start - 0.6, brain_start + 0.6))

    volume = _acquire(rng, image, head)
    return volume, np.where(mask, np.uint8(255), np.uint8(0))


def patient_folder_name(index: int) -> str:
    """Folder name of the 1-based ``index``-th patient, e.g. 1 -> ``SYN_AA_0001_20000101``."""
    return f"SYN_{SITES[(index - 1) % len(SITES)]}_{index:04d}_{SCAN_DATE}"


def _write_patient(folder: pathlib.Path, volume: np.ndarray, mask: np.ndarray) -> None:
    folder.mkdir()
    for number, (image, label) in enumerate(zip(volume, mask, strict=True), start=1):
        stem = folder / f"{folder.name}_{number}"
        # cv2 writes BGR: reverse the channels so that reading back and reversing again gives
        # (pre-contrast, FLAIR, post-contrast).
        if not cv2.imwrite(f"{stem}.tif", np.ascontiguousarray(image[..., ::-1])):
            raise OSError(f"could not write {stem}.tif")
        if not cv2.imwrite(f"{stem}_mask.tif", label):
            raise OSError(f"could not write {stem}_mask.tif")


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

    Patient ``i`` (1-based) goes to ``SYN_<site>_<i:04d>_20000101/`` with site cycling over
    ``SITES``. Its slices are ``<folder>_<n>.tif`` (H x W x 3 uint8, BGR on disk, i.e.
    (pre-contrast, FLAIR, post-contrast) once reversed) and ``<folder>_<n>_mask.tif``
    (H x W uint8, 0 or 255). ``data.csv`` lists Patient (folder name without the date), site,
    slices and tumour_slices.

    Args:
        out_dir: parent folder; created if needed. ``out_dir/kaggle_3m`` must not exist or be
            empty.
        num_patients: number of patients, at least 1.
        seed: the same seed always gives byte-identical files. Patient i draws from
            ``numpy.random.default_rng([seed, i])``, so it does not depend on the others.
        image_size: height = width of every slice; a multiple of 8, at least 32.
        slices_per_patient: inclusive range (low, high) of slices per patient, low >= 5.
        progress: show a tqdm progress bar over patients.

    Raises:
        ValueError: for an invalid argument.
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
    for index in tqdm(
        range(1, num_patients + 1), desc="Synthesising patients", unit="patient",
        disable=not progress,
    ):
        rng = np.random.default_rng([seed, index])
        num_slices = int(rng.integers(low, high + 1))
        volume, mask = synthesize_patient(rng, num_slices=num_slices, image_size=image_size)
        folder = patient_folder_name(index)
        _write_patient(root / folder, volume, mask)
        tumour_slices = int(np.count_nonzero(mask.any(axis=(1, 2))))
        patient, site = folder.rsplit("_", 1)[0], SITES[(index - 1) % len(SITES)]
        rows.append((patient, site, num_slices, tumour_slices))

    with open(root / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    return root
