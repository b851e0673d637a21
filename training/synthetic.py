"""Synthetic fluorescence nuclei with exact instance labels.

Why generated data: the project ships a demo model that must be trained on data we
are free to make and to redistribute, and the real images with ground truth are kept
for evaluation only. The generator follows what widefield/confocal nuclei images
look like in general (see ``shared/docs/demo-model-notes.md``):

- nuclei from ~3 to ~15 px radius in the same field, smooth and nearly convex;
- crowded clusters where neighbours touch, with a faint dark seam between them;
- most nuclei of ordinary brightness, a few (mitotic) many times brighter, so that
  after percentile normalization ordinary nuclei sit low (0.2-0.3);
- mild interior texture, a slightly domed profile, soft edges (optical blur);
- out-of-focus haze: large, dim, blurred blobs that are *not* nuclei;
- uneven background, Poisson (shot) and Gaussian (read) noise.

Two styles. ``NucleiStyle()`` (the v0 demo model's data) draws every image from one
fixed look. ``RANDOMIZED`` is domain randomization: each image also draws its own look
(outline irregularity, brightness spread with dim and G2 nuclei, flat/domed/rim-bright
profiles, nucleoli, texture, seam, blur, gamma, background level, noise, and 8-bit
storage with occasional saturation), because a model that has seen many looks of
nuclei is more likely to treat an unseen microscope's look as one more of them.

Everything is driven by a ``numpy.random.Generator`` so a seed reproduces an image.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon
from skimage.segmentation import find_boundaries, relabel_sequential


@dataclass(frozen=True)
class NucleiStyle:
    """Ranges the generator samples from; one image samples one value of each.

    With ``randomize`` the per-image look (``draw_look``) replaces ``radius_spread``,
    ``blur_sigma`` and ``photons``.
    """

    typical_radius: tuple[float, float] = (3.5, 11.0)   # log-uniform per image
    radius_spread: float = 0.25                          # log-normal sigma around it
    fill_fraction: tuple[float, float] = (0.08, 0.45)    # share of the field covered
    cluster_share: tuple[float, float] = (0.0, 0.8)      # nuclei placed in clusters
    mitotic_share: tuple[float, float] = (0.0, 0.04)     # very bright nuclei
    haze_blobs: tuple[int, int] = (0, 8)                 # unlabelled out-of-focus blobs
    blur_sigma: tuple[float, float] = (0.6, 1.6)         # optical blur, pixels
    photons: tuple[float, float] = (30.0, 600.0)         # photons for an ordinary nucleus
    read_noise: tuple[float, float] = (0.5, 4.0)         # Gaussian noise, photon units
    randomize: bool = False                              # per-image look (see RANDOMIZED)
    axis_ratio: tuple[float, float] = (0.6, 1.0)         # minor/major axis of the ellipse
    max_overlap: float = 0.15                            # share of a new nucleus on others
    min_contrast_to_noise: float | None = None           # label only visible nuclei (see visible_labels)


@dataclass(frozen=True)
class ImageLook:
    """Per-image appearance drawn under domain randomization."""

    wobble: float            # std of the low-order outline harmonics
    radius_spread: float
    brightness_spread: float
    dim_share: float
    g2_share: float
    dome: float              # 0 flat interior .. 0.5 strongly domed
    rim: float               # peripheral heterochromatin brightening
    texture: float
    texture_scale: float
    nucleoli: float          # depth of dark nucleoli, 0 = none
    seam: float              # brightness kept on the touching rim
    blur: float
    gamma: float
    background: float
    photons: float
    eight_bit: float         # 0 = float image; else the gain of 8-bit storage (can saturate)


def draw_look(rng: np.random.Generator) -> ImageLook:
    """One image's look; ranges cover widefield and confocal nuclei stains in general."""
    return ImageLook(
        wobble=rng.uniform(0.01, 0.06),
        radius_spread=rng.uniform(0.12, 0.4),
        brightness_spread=rng.uniform(0.15, 0.6),
        dim_share=rng.uniform(0.0, 0.15),
        g2_share=rng.uniform(0.0, 0.3),
        dome=rng.uniform(0.0, 0.5),
        rim=rng.uniform(0.1, 0.4) if rng.random() < 0.3 else 0.0,
        texture=rng.uniform(0.03, 0.3),
        texture_scale=rng.uniform(0.7, 2.5),
        nucleoli=rng.uniform(0.2, 0.5) if rng.random() < 0.4 else 0.0,
        seam=rng.uniform(0.4, 1.0),
        blur=rng.uniform(0.4, 2.2),
        gamma=rng.uniform(0.7, 1.4),
        background=rng.uniform(0.0, 0.35),
        photons=float(np.exp(rng.uniform(np.log(15), np.log(2000)))),
        eight_bit=rng.uniform(120, 400) if rng.random() < 0.5 else 0.0,
    )


def nucleus_outline(center: tuple[float, float], radius: float, rng: np.random.Generator,
                    n_points: int = 48, axis_ratio: tuple[float, float] = (0.6, 1.0),
                    wobble: float = 0.03, harmonics: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Smooth, nearly convex outline as (n_points, 2) array of (y, x) vertices.

    An ellipse with small low-order Fourier wobble: real nuclei are rounded; wobbly
    outlines made an earlier demo model worse.
    """
    angles = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
    ratio = rng.uniform(*axis_ratio)
    a, b = radius / np.sqrt(ratio), radius * np.sqrt(ratio)
    theta = rng.uniform(0, np.pi)
    r = a * b / np.sqrt((b * np.cos(angles)) ** 2 + (a * np.sin(angles)) ** 2)
    for k in harmonics:
        r *= 1 + rng.normal(0, wobble) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    y = center[0] + r * np.sin(angles + theta)
    x = center[1] + r * np.cos(angles + theta)
    return np.stack([y, x], axis=1)


def smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std smooth random field."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-9)


def place_nuclei(shape: tuple[int, int], style: NucleiStyle, rng: np.random.Generator,
                 look: ImageLook | None = None) -> tuple[np.ndarray, list[float]]:
    """Label image with nuclei placed freely or in touching clusters."""
    outline_kwargs: dict = {}
    radius_spread = style.radius_spread
    if look is not None:
        outline_kwargs = dict(axis_ratio=style.axis_ratio, wobble=look.wobble, harmonics=(2, 3, 4))
        radius_spread = look.radius_spread
    height, width = shape
    labels = np.zeros(shape, np.int32)
    typical = np.exp(rng.uniform(*np.log(style.typical_radius)))
    target_fill = rng.uniform(*style.fill_fraction)
    cluster_share = rng.uniform(*style.cluster_share)
    n_clusters = max(1, int(rng.integers(1, 6)))
    cluster_centers = rng.uniform((0, 0), (height, width), size=(n_clusters, 2))
    radii: list[float] = []
    filled, attempts = 0, 0
    while filled < target_fill * labels.size and attempts < 4000:
        attempts += 1
        radius = float(np.clip(typical * np.exp(rng.normal(0, radius_spread)), 2.5, 17))
        if rng.random() < cluster_share:
            c = cluster_centers[rng.integers(n_clusters)]
            center = c + rng.normal(0, 4 * typical, size=2)
        else:
            center = rng.uniform((-radius, -radius), (height + radius, width + radius))
        outline = nucleus_outline(tuple(center), radius, rng, **outline_kwargs)
        rr, cc = draw_polygon(outline[:, 0], outline[:, 1], shape)
        if rr.size < 5:
            continue
        overlap = np.count_nonzero(labels[rr, cc]) / rr.size
        if overlap > style.max_overlap:          # touching and slightly squeezed, never piled up
            continue
        free = labels[rr, cc] == 0
        label = len(radii) + 1
        labels[rr[free], cc[free]] = label
        radii.append(radius)
        filled += int(free.sum())
    return drop_fragments(labels), radii


def drop_fragments(labels: np.ndarray, min_pixels: int = 6) -> np.ndarray:
    """Keep only each label's largest connected part; drop slivers; relabel 1..n."""
    out = np.zeros_like(labels)
    next_label = 1
    for label, region in enumerate(ndi.find_objects(labels), start=1):
        if region is None:
            continue
        parts, n = ndi.label(labels[region] == label)
        if n == 0:
            continue
        sizes = np.bincount(parts.ravel())[1:]
        keep = parts == (np.argmax(sizes) + 1)
        if keep.sum() < min_pixels:
            continue
        out[region][keep] = next_label
        next_label += 1
    return out


def _haze(shape: tuple[int, int], n_blobs: int, amplitude: tuple[float, float],
          rng: np.random.Generator) -> np.ndarray:
    """Out-of-focus light: ``n_blobs`` large Gaussian blobs that are not nuclei."""
    haze = np.zeros(shape)
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    for _ in range(n_blobs):
        cy, cx, sigma = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(6, 20)
        haze += rng.uniform(*amplitude) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    return haze


def _camera(clean: np.ndarray, photons: float, read_noise: tuple[float, float],
            rng: np.random.Generator) -> np.ndarray:
    """Shot noise at ``photons`` per unit of ``clean``, plus Gaussian read noise (float64)."""
    noisy = rng.poisson(np.clip(clean, 0, None) * photons).astype(np.float64)
    return noisy + rng.normal(0, rng.uniform(*read_noise), size=clean.shape)


def render_nuclei(labels: np.ndarray, rng: np.random.Generator,
                  style: NucleiStyle = NucleiStyle()) -> np.ndarray:
    """Fluorescence image (float32, photon-like units) for an instance label image."""
    shape = labels.shape
    n = int(labels.max())
    brightness = np.exp(rng.normal(0, 0.35, size=n + 1))          # dim and bright nuclei
    mitotic = rng.random(n + 1) < rng.uniform(*style.mitotic_share)
    brightness[mitotic] *= rng.uniform(3, 8, size=int(mitotic.sum()))
    brightness[0] = 0.0
    signal = brightness[labels]

    # domed profile: brighter towards each nucleus' centre, soft towards the rim
    inside = labels > 0
    dist = ndi.distance_transform_edt(inside & ~find_boundaries(labels, mode="inner"))
    signal *= 0.75 + 0.25 * np.tanh(dist / 3.0)
    # mild chromatin texture
    signal *= 1 + rng.uniform(0.03, 0.15) * smooth_noise(shape, rng.uniform(1.0, 2.0), rng)
    # faint dark seam where neighbours touch
    seam = find_boundaries(labels, mode="inner") & inside
    signal[seam] *= rng.uniform(0.55, 0.9)

    haze = _haze(shape, int(rng.integers(style.haze_blobs[0], style.haze_blobs[1] + 1)), (0.1, 0.4), rng)
    background = rng.uniform(0.02, 0.2) * (1 + 0.5 * smooth_noise(shape, shape[0] / 4, rng))

    clean = ndi.gaussian_filter(signal, rng.uniform(*style.blur_sigma)) + haze + np.clip(background, 0, None)
    noisy = _camera(clean, rng.uniform(*style.photons), style.read_noise, rng)
    offset = rng.uniform(0, 100)      # camera offset: absolute values do not matter
    return (noisy + offset).astype(np.float32)


def _spots(mask: np.ndarray, n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` Gaussian spots of peak ~1 at random pixels of ``mask`` (nucleoli)."""
    spots = np.zeros(mask.shape)
    where = np.flatnonzero(mask)
    if n and where.size:
        spots.flat[rng.choice(where, size=min(n, where.size), replace=False)] = 2 * np.pi * sigma ** 2
    return np.clip(ndi.gaussian_filter(spots, sigma), 0, 1)


def render_randomized(labels: np.ndarray, rng: np.random.Generator, look: ImageLook,
                      style: NucleiStyle) -> np.ndarray:
    """Fluorescence image for ``labels`` in one drawn ``look`` (float32, or 0-255 if 8-bit)."""
    shape = labels.shape
    n = int(labels.max())
    brightness = np.exp(rng.normal(0, look.brightness_spread, size=n + 1))
    brightness[rng.random(n + 1) < look.g2_share] *= 1.8                # twice the DNA, before division
    dim = rng.random(n + 1) < look.dim_share
    brightness[dim] *= rng.uniform(0.25, 0.5, size=int(dim.sum()))
    mitotic = rng.random(n + 1) < rng.uniform(*style.mitotic_share)
    brightness[mitotic] *= rng.uniform(3, 8, size=int(mitotic.sum()))
    brightness[0] = 0.0
    signal = brightness[labels]

    inside = labels > 0
    rim_pixels = find_boundaries(labels, mode="inner") & inside
    dist = ndi.distance_transform_edt(inside & ~rim_pixels)
    signal *= (1 - look.dome) + look.dome * np.tanh(dist / rng.uniform(2.0, 5.0))
    if look.rim:
        signal *= 1 + look.rim * np.exp(-dist / 1.5) * inside
    signal *= np.clip(1 + look.texture * smooth_noise(shape, look.texture_scale, rng), 0.2, None)
    if look.nucleoli:
        n_spots = int(n * rng.uniform(0.5, 2.0))
        signal *= 1 - look.nucleoli * _spots(dist > 2, n_spots, rng.uniform(0.8, 1.8), rng)
    signal[rim_pixels] *= look.seam

    haze = _haze(shape, int(rng.integers(style.haze_blobs[0], style.haze_blobs[1] + 1)), (0.05, 0.5), rng)
    background = look.background * np.clip(1 + 0.5 * smooth_noise(shape, shape[0] / 4, rng), 0, None)

    clean = np.clip(ndi.gaussian_filter(signal, look.blur) + haze + background, 0, None) ** look.gamma
    noisy = _camera(clean, look.photons, style.read_noise, rng)
    if look.eight_bit:            # stored as 8 bit: the brightest nuclei may saturate
        scale = look.eight_bit / max(float(np.percentile(noisy, 99.9)), 1e-6)
        return np.clip(np.round(noisy * scale), 0, 255).astype(np.float32)
    return (noisy + rng.uniform(0, 100)).astype(np.float32)


def contrast_to_noise(image: np.ndarray, labels: np.ndarray, ring: int = 3) -> np.ndarray:
    """Per label 1..n: (mean inside - mean of the surrounding ring) / std of that ring.

    The ring is ``ring`` px wide and leaves out every nucleus, so it holds what an
    annotator compares a nucleus with: background, haze and noise. A nucleus with no
    free surroundings (enclosed by neighbours) gets ``inf``: its outline is its seams.
    """
    nuclei = labels > 0
    scores = np.full(int(labels.max()), np.inf)
    for label, region in enumerate(ndi.find_objects(labels), start=1):
        if region is None:
            continue
        window = tuple(slice(max(s.start - ring - 1, 0), s.stop + ring + 1) for s in region)
        inside = labels[window] == label
        around = ndi.binary_dilation(inside, iterations=ring) & ~nuclei[window]
        if around.sum() >= 5:
            values = image[window]
            scores[label - 1] = (values[inside].mean() - values[around].mean()) / (values[around].std() + 1e-6)
    return scores


def visible_labels(image: np.ndarray, labels: np.ndarray, min_contrast_to_noise: float) -> np.ndarray:
    """Labels of the nuclei an annotator could see; the others stay in the image unlabelled.

    Under domain randomization (low light, dim nuclei, haze) about one nucleus in eight
    is drawn fainter than one noise std above its surroundings: invisible, yet labelled,
    it would teach a model to find nuclei in noise. People annotate what they can see.
    """
    keep = np.concatenate([[False], contrast_to_noise(image, labels) >= min_contrast_to_noise])
    return relabel_sequential(np.where(keep[labels], labels, 0))[0]


def synthetic_nuclei(shape: tuple[int, int], rng: np.random.Generator,
                     style: NucleiStyle = NucleiStyle()) -> tuple[np.ndarray, np.ndarray]:
    """One image and its labels: ``(Y, X) float32`` image, ``(Y, X) uint16`` labels."""
    if style.randomize:
        look = draw_look(rng)
        labels, _ = place_nuclei(shape, style, rng, look)
        image = render_randomized(labels, rng, look, style)
    else:
        labels, _ = place_nuclei(shape, style, rng)
        image = render_nuclei(labels, rng, style)
    if style.min_contrast_to_noise is not None:    # uses no random numbers: same images
        labels = visible_labels(image, labels, style.min_contrast_to_noise)
    return image, labels.astype(np.uint16)


#: Domain-randomized style of the v2 demo model: wider sizes, shapes and density,
#: and a per-image look (``draw_look``).
RANDOMIZED = NucleiStyle(
    typical_radius=(3.0, 14.0), fill_fraction=(0.05, 0.55), mitotic_share=(0.0, 0.05), haze_blobs=(0, 12),
    randomize=True, axis_ratio=(0.45, 1.0), max_overlap=0.25,
)


#: Crowded planes for benchmarks and agreement tests: ~1,100 touching nuclei per 1024 x 1024
#: plane (~150 per 384 x 384), in clusters, with haze.
CROWDED = NucleiStyle(typical_radius=(9.5, 10.5), radius_spread=0.15, fill_fraction=(0.32, 0.36),
                      cluster_share=(0.3, 0.5), haze_blobs=(0, 3), photons=(200.0, 400.0))


#: The styles with annotator-visible labels (mean >= 1 noise std above surroundings).
VISIBLE_PLAIN = replace(NucleiStyle(), min_contrast_to_noise=1.0)
VISIBLE_RANDOMIZED = replace(RANDOMIZED, min_contrast_to_noise=1.0)


def synthetic_dataset(n_images: int, shape: tuple[int, int] = (256, 256), seed: int = 0,
                      style: NucleiStyle = NucleiStyle()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n_images`` image/label pairs from one seed."""
    rng = np.random.default_rng(seed)
    pairs = [synthetic_nuclei(shape, rng, style) for _ in range(n_images)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def synthetic_mix(n_images: int, shape: tuple[int, int] = (256, 256), seed: int = 0,
                  styles: tuple[NucleiStyle, ...] = (NucleiStyle(), RANDOMIZED)
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n_images`` pairs taking the ``styles`` in turn, from one seed.

    Randomization should widen the training distribution, not replace it: the mix keeps
    the plain look beside the randomized ones.
    """
    rng = np.random.default_rng(seed)
    pairs = [synthetic_nuclei(shape, rng, styles[i % len(styles)]) for i in range(n_images)]
    return [p[0] for p in pairs], [p[1] for p in pairs]

