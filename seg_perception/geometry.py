"""Per-object 3D boxes from a registered depth image and the colour camera's intrinsics (no rclpy).

For each segmented object (:class:`~seg_perception.postprocess.SegObject`):

1. its mask is cut to its bounding box (plus a margin) and eroded, so edge pixels whose
   depth mixes object and background do not smear the box;
2. the remaining pixels with valid depth (0 / NaN / out of range dropped) become 3D points
   in the camera's optical frame; depth outliers are trimmed (median +- k MAD);
3. the table under the object is a plane fitted to the background pixels in a ring around
   the mask: its normal is the object's up direction (a camera tilted over the table needs
   no TF); without a usable ring the smallest principal axis of the object's points is used;
4. the box: up = table normal; the footprint is the minimum-area rectangle of the points at the
   mask's border dropped onto the table (``cv2.minAreaRect``), whose longer side is the length
   axis; width axis = up x length; each extent is the outermost border point plus the eroded and
   half-pixel border, converted to metres at the object's distance; height = the highest point
   above the table. Rotationally symmetric classes get yaw 0.

Yaw is measured in the table plane from the projection of the camera's x axis (image right)
and folded to (-90, 90] degrees, since a box's length axis has no sign. Everything works on
the mask's bounding box only; nothing loops over pixels in Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: 16UC1 depth is in millimetres, 32FC1 in metres (REP 118).
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


class CameraError(ValueError):
    """Camera info that cannot be used (non-finite or non-positive intrinsics, size mismatch)."""


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics of the colour camera for an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> CameraModel:
        """From CameraInfo's row-major 3x3 ``K`` (distortion is ignored: rectified or small)."""
        k = np.asarray(k, np.float64).reshape(-1)
        if k.size != 9:
            raise CameraError(f"K has {k.size} values, expected 9")
        if not np.all(np.isfinite(k)):
            raise CameraError("K has non-finite values")
        fx, fy, cx, cy = float(k[0]), float(k[4]), float(k[2]), float(k[5])
        if fx <= 0 or fy <= 0:
            raise CameraError(f"focal lengths must be > 0 (fx={fx}, fy={fy})")
        if width <= 0 or height <= 0:
            raise CameraError(f"camera info size {width}x{height} is empty")
        return cls(fx, fy, cx, cy, int(width), int(height))

    def scaled_to(self, width: int, height: int, aspect_tol: float = 0.01) -> CameraModel:
        """The same camera for an image resized to ``width`` x ``height`` (same aspect ratio only)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        if abs(sx - sy) > aspect_tol * max(sx, sy):
            raise CameraError(
                f"camera info is {self.width}x{self.height}, the image {width}x{height}: "
                f"different aspect ratio, cannot scale K"
            )
        # pixel centres: u' + 0.5 = s (u + 0.5)
        return CameraModel(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, int(width), int(height)
        )

    def k(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)


def default_camera(width: int, height: int, hfov_deg: float = 69.0) -> CameraModel:
    """A pinhole guess: square pixels, principal point at the centre, ``hfov_deg`` wide.

    69 degrees is about the colour field of view of common RGB-D cameras on @Work robots; the
    rendered demo scenes use it and ``seg-make-bag`` writes it as CameraInfo.
    """
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return CameraModel(f, f, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height))


def depth_scale(encoding: str) -> float:
    """Metres per depth unit of an encoding (``ValueError`` for anything else)."""
    if encoding in ("16UC1", "mono16"):
        return 0.001
    if encoding == "32FC1":
        return 1.0
    raise ValueError(f"depth encoding {encoding!r} not supported; expected one of {list(DEPTH_ENCODINGS)}")


@dataclass(frozen=True)
class GeometryConfig:
    erosion_px: int = 2  # mask erosion before taking points (mixed edge pixels)
    min_points: int = 30  # fewer valid points: no pose
    trim_mads: float = 4.0  # depth outliers: |z - median| > trim_mads * 1.4826 * MAD ...
    trim_min_m: float = 0.015  # ... and more than this (an object is deep when seen at an angle)
    ring_px: int = 12  # table ring: up to this many pixels around the mask ...
    ring_gap_px: int = 3  # ... starting this far from it
    min_table_points: int = 40
    max_table_points: int = 400  # the ring is sampled down to about this many
    max_table_rms_m: float = 0.006
    max_fit_points: int = 1000  # the interior and the table ring are sampled down to about this many
    min_depth_m: float = 0.05
    max_depth_m: float = 10.0
    symmetric_classes: frozenset[str] = frozenset()
    round_section_classes: frozenset[str] = frozenset()  # lying cylinders: width = height


@dataclass
class Object3D:
    """One object's oriented box in the camera's optical frame (metres)."""

    instance_id: int
    class_id: int
    class_name: str
    score: float
    center: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3): columns = length, width and up axes
    dims: np.ndarray  # (3,): length, width, height
    yaw: float  # radians in the table plane, from the camera's x axis, (-pi/2, pi/2]
    num_points: int
    table_fit: bool  # up direction from the table around the object (else from the object's own points)
    resolved_from: str | None = None  # class the segmentation said, when a size pair changed it
    original_class_id: int | None = None  # its class id, when resolved_from is set

    def quaternion(self) -> tuple[float, float, float, float]:
        """(x, y, z, w) of :attr:`rotation`."""
        return rotation_to_quaternion(self.rotation)


def rotation_to_quaternion(r: np.ndarray) -> tuple[float, float, float, float]:
    """A proper rotation matrix -> unit quaternion (x, y, z, w), w >= 0."""
    m = np.asarray(r, np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3-vector cross product (np.cross costs ~10x more for single vectors)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def table_frame(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(e1, e2): the camera's x axis projected onto the plane with normal ``up``, and up x e1."""
    # scalar arithmetic: on single 3-vectors numpy's per-call cost is most of the time
    ux, uy, uz = up.tolist()
    n = math.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / n, uy / n, uz / n
    ax, ay, az = 1.0 - ux * ux, -ux * uy, -ux * uz  # x - (x.up) up
    if ax * ax + ay * ay + az * az < 1e-12:  # camera x along the normal: use the image's down axis instead
        ax, ay, az = -uy * ux, 1.0 - uy * uy, -uy * uz
    m = math.sqrt(ax * ax + ay * ay + az * az)
    ax, ay, az = ax / m, ay / m, az / m
    return np.array([ax, ay, az]), np.array([uy * az - uz * ay, uz * ax - ux * az, ux * ay - uy * ax])


def fold_yaw(yaw: float) -> float:
    """An axis direction has no sign: fold an angle into (-pi/2, pi/2]."""
    yaw = math.remainder(yaw, math.pi)  # [-pi/2, pi/2]
    return math.pi / 2 if yaw <= -math.pi / 2 + 1e-12 else yaw


def yaw_in_table(axis: np.ndarray, up: np.ndarray) -> float:
    """Yaw of a length ``axis`` on the table with normal ``up``: from the projected camera x axis, folded."""
    e1, e2 = table_frame(up)
    return fold_yaw(math.atan2(float(axis @ e2), float(axis @ e1)))


def yaw_error(a: float, b: float) -> float:
    """Smallest angle between two axis yaws (radians, 0..pi/2)."""
    return abs(math.remainder(a - b, math.pi))


# --- the measurement ----------------------------------------------------------------------------
def _rect(r: int) -> np.ndarray:
    return np.ones((2 * r + 1, 2 * r + 1), np.uint8)


def _eig_sym3(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric 3x3 matrix, as ``np.linalg.eigh``
    gives them (``cv2.eigen`` takes a quarter of its time on one small matrix)."""
    _, w, v = cv2.eigen(a)  # descending, eigenvectors as rows
    return w[::-1, 0], v[::-1].T


def _fit_plane(pts: np.ndarray, cfg: GeometryConfig) -> tuple[np.ndarray, float] | None:
    """Least-squares plane through ``pts`` (3, N) (unit normal towards the camera, offset d: n.p + d = 0),
    refitted without points off it (> 2.5 rms) until none are left (flying pixels pull the first fit far
    off). The refits subtract the dropped points from the sums rather than start again."""
    n_pts = pts.shape[1]
    s1, s2 = pts.sum(axis=1), pts @ pts.T  # first and second moments
    for _ in range(5):
        if n_pts < cfg.min_table_points:
            return None
        c = s1 / n_pts
        w, v = _eig_sym3(s2 / n_pts - c[:, None] * c)
        if w[1] < (0.004**2):  # points along a line: the plane's tilt about it is unknown
            return None
        n = v[:, 0] if v[:, 0] @ c <= 0 else -v[:, 0]  # the camera (origin) on the side the normal points to
        d = -float(n @ c)
        rms = math.sqrt(max(float(w[0]), 0.0))  # the smallest eigenvalue is the mean squared residual
        off = np.abs(n @ pts + d) > max(2.5 * rms, 0.002)
        n_off = int(np.count_nonzero(off))
        if n_off == 0:
            break
        dropped, pts = pts.compress(off, axis=1), pts.compress(~off, axis=1)
        n_pts -= n_off
        s1, s2 = s1 - dropped.sum(axis=1), s2 - dropped @ dropped.T
    if rms > cfg.max_table_rms_m:
        return None
    return n, d


class _Crop:
    """The depth of a crop: raw values (millimetres or metres) and where the crop sits in the image."""

    def __init__(self, raw: np.ndarray, scale: float, x0: int, y0: int, cam: CameraModel):
        self.raw, self.scale, self.x0, self.y0, self.cam = raw, scale, x0, y0, cam

    def points(
        self, sel: np.ndarray, step: int = 1, extra: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """3D points (3, N) of the selected pixels (every ``step``-th row and column), and ``extra`` there.

        Points are columns: reductions over them run along contiguous rows (several times faster than
        down the columns of an (N, 3) array, which is what these few-hundred-point arrays spend on).
        Select columns with ``compress``: ``pts[:, mask]`` returns a Fortran-ordered array (strided
        rows again) and takes three times as long."""
        sub = sel[::step, ::step] if step > 1 else sel
        idx = np.flatnonzero(sub)  # much faster than np.nonzero on 2D masks
        vs, us = np.divmod(idx, sub.shape[1])
        if step > 1:
            vs, us = vs * step, us * step
        cam = self.cam
        pts = np.empty((3, len(idx)))
        z = pts[2]
        np.multiply(self.raw[vs, us], self.scale, out=z)
        np.multiply(us + (self.x0 - cam.cx), z / cam.fx, out=pts[0])
        np.multiply(vs + (self.y0 - cam.cy), z / cam.fy, out=pts[1])
        return pts, (extra[vs, us] if extra is not None else None)


def _median(a: np.ndarray) -> float:
    """np.median of a 1-D array by partition (a third of np.median's time on a few hundred values)."""
    k = a.size // 2
    if a.size % 2:
        return float(np.partition(a, k)[k])
    p = np.partition(a, (k - 1, k))
    return 0.5 * (float(p[k - 1]) + float(p[k]))


def _metres_per_pixel(p: np.ndarray, axis: np.ndarray, cam: CameraModel) -> float:
    """How far a point at ``p`` moves along ``axis`` (3D) when its image moves one pixel that way."""
    x, y, z = p
    du = cam.fx * (axis[0] * z - x * axis[2]) / (z * z)
    dv = cam.fy * (axis[1] * z - y * axis[2]) / (z * z)
    return 1.0 / max(math.hypot(du, dv), 1e-6)


def _reach(
    s_core: np.ndarray, d_core: np.ndarray, s_band: np.ndarray, d_band: np.ndarray, mpp: np.ndarray
) -> np.ndarray:
    """How far the object reaches along each row of ``s`` (coordinates of the points along
    axis/sign pairs, (sides, N); all sides at once).

    ``d``: each point's pixel distance to the mask's outline (the outline lies half a pixel beyond the
    outermost mask pixel). The core's extreme points lie ``d - 0.5`` pixels inside it; how many metres
    such a pixel is worth comes from the band between core and outline: a face seen edge-on adds ~0 per
    pixel, a face seen face-on one pixel's width ``mpp`` (at most two).
    """
    # (bool.sum and minimum/maximum: count_nonzero along an axis and clip cost twice as much here)
    c = s_core.max(axis=1)
    near = s_core >= (c - 0.5 * mpp)[:, None]
    d_c = (near @ d_core) / near.sum(axis=1)
    rate = mpp
    if s_band.shape[1]:
        b = s_band.max(axis=1)
        near = s_band >= (b - 0.5 * mpp)[:, None]
        dpx = d_c - (near @ d_band) / near.sum(axis=1)
        r = np.minimum(np.maximum((b - c) / np.maximum(dpx, 0.25), 0.0), 2.0 * mpp)
        rate = np.where(dpx > 0.25, r, mpp)
    return c + rate * np.maximum(d_c - 0.5, 0.0)


def measure_object(
    depth: np.ndarray,
    labels: np.ndarray,
    instances: np.ndarray,
    instance_id: int,
    bbox: tuple[int, int, int, int],
    cam: CameraModel,
    cfg: GeometryConfig,
    class_name: str = "",
) -> tuple[dict | None, str]:
    """Box of one instance; ``(None, reason)`` when it cannot be measured.

    ``depth``: HxW float32 metres (invalid = 0 or NaN) or uint16 millimetres, same size as
    ``labels``/``instances`` and ``cam``. ``bbox``: x, y, w, h of the instance (pixels).
    Work is bounded: the interior is sampled on a grid of at most ~``max_fit_points`` points,
    the extents come from the one-pixel bands at the eroded border.
    """
    h_img, w_img = instances.shape
    x, y, w, h = bbox
    pad = cfg.ring_px + 1
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(w_img, x + w + pad), min(h_img, y + h + pad)
    mask = (instances[y0:y1, x0:x1] == instance_id).view(np.uint8)
    raw = depth[y0:y1, x0:x1]
    scale = 0.001 if raw.dtype == np.uint16 else 1.0
    # compare in the raw unit (no conversion of the whole crop); NaN compares False
    valid = (raw > cfg.min_depth_m / scale) & (raw < cfg.max_depth_m / scale)
    crop = _Crop(raw, scale, x0, y0, cam)

    erosion = cfg.erosion_px
    # distance of every mask pixel to the nearest non-mask pixel: bands of equal width in every direction
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    core = (dist > erosion + 0.5) & valid
    n_core = int(np.count_nonzero(core))
    if n_core < cfg.min_points and erosion > 0:
        erosion = 0  # a thin object: its whole mask rather than nothing
        core = mask.view(bool) & valid
        n_core = int(np.count_nonzero(core))
    if n_core < cfg.min_points:
        return None, "too_few_points"
    step = max(1, int(math.sqrt(n_core / cfg.max_fit_points)))
    inner, _ = crop.points(core, step)
    z = inner[2]
    zs = z[:: max(1, len(z) // 256)]  # median and MAD of a sample: outliers are few, the sample says enough
    med = _median(zs)
    mad = _median(np.abs(zs - med))
    tol = max(cfg.trim_mads * 1.4826 * mad, cfg.trim_min_m)
    inner = inner.compress(np.abs(z - med) <= tol, axis=1)
    if inner.shape[1] < min(cfg.min_points, n_core):
        return None, "too_few_points"
    # the core's outermost pixels, and the band between the core and the mask's outline (one gather)
    lo_d = erosion - 0.5 if erosion else 0.5
    rim, d_rim = crop.points((dist > lo_d) & (dist <= erosion + 1.5) & valid, extra=dist)
    rim_ok = np.abs(rim[2] - med) <= tol
    in_core = d_rim > erosion + 0.5
    is_edge = rim_ok & in_core
    edge, d_edge = rim.compress(is_edge, axis=1), d_rim[is_edge]
    is_band = rim_ok & ~in_core
    band, d_band = (rim.compress(is_band, axis=1), d_rim[is_band]) if erosion else (edge[:, :0], d_edge[:0])
    if edge.shape[1] < 3:
        return None, "too_few_points"

    # Up direction: the table in a ring around the mask (background by the segmentation).
    ring = cv2.dilate(mask, _rect(cfg.ring_px)).view(bool) & ~cv2.dilate(mask, _rect(cfg.ring_gap_px)).view(bool)
    ring &= (labels[y0:y1, x0:x1] == 0) & valid
    n_ring = int(np.count_nonzero(ring))
    plane = None
    if n_ring >= cfg.min_table_points:
        plane = _fit_plane(crop.points(ring, max(1, int(math.sqrt(n_ring / cfg.max_table_points))))[0], cfg)
    if plane is not None:
        up, d = plane
        if float((up @ inner).max()) + d <= 0.002:  # nothing above the "table": not the surface under it
            plane = None
    if plane is None:
        c = inner.sum(axis=1) / inner.shape[1]
        q = inner - c[:, None]
        _, v = _eig_sym3(q @ q.T / q.shape[1])
        up = v[:, 0] if v[:, 0] @ c < 0 else -v[:, 0]
        d = -float(up @ c) - float((up @ q).min())  # the lowest visible point stands in for the table
    top = max(float((up @ inner).max()), float((up @ edge).max())) + d

    # Footprint: every point dropped onto the table, in table coordinates (e1 = camera x projected).
    e1, e2 = table_frame(up)
    hull_pts = np.array([e1, e2]) @ np.concatenate([edge, band], axis=1)  # (2, N)
    if class_name in cfg.symmetric_classes:
        yaw = 0.0
    else:
        (_, _), (rw, rh), ang = cv2.minAreaRect(np.ascontiguousarray(hull_pts.T, np.float32))
        yaw = fold_yaw(math.radians(ang) + (0.0 if rw >= rh else math.pi / 2))
    a1 = math.cos(yaw) * e1 + math.sin(yaw) * e2
    a2 = cross(up, a1)
    centre_guess = inner.sum(axis=1) / inner.shape[1]
    axes = np.array([a1, a2, -a1, -a2])  # (4, 3): both sides of both axes
    mpp = np.array([_metres_per_pixel(centre_guess, a1, cam), _metres_per_pixel(centre_guess, a2, cam)] * 2)
    hi1, hi2, neg_lo1, neg_lo2 = _reach(axes @ edge, d_edge, axes @ band, d_band, mpp)
    lo1, lo2 = -neg_lo1, -neg_lo2
    length, width, height = hi1 - lo1, hi2 - lo2, max(top, 0.0)
    if class_name in cfg.round_section_classes and width < height < length:
        # A lying cylinder: from an oblique view the part of its far side below the silhouette's tangent
        # is hidden, but its cross-section is round: width = height, grown on the side away from the camera.
        if float(a2 @ centre_guess) > 0:
            hi2 += height - width
        else:
            lo2 -= height - width
        width = height
    # -d * up is the table point closest to the camera; a1 and a2 are orthogonal to it.
    centre = -d * up + a1 * ((lo1 + hi1) / 2) + a2 * ((lo2 + hi2) / 2) + up * (height / 2)
    if class_name in cfg.symmetric_classes:  # round: the box covers it whatever the yaw
        length = width = max(length, width)
    elif length < width:  # keep length >= width; the yaw names the length axis
        length, width = width, length
        yaw = fold_yaw(yaw + math.pi / 2)
        a1 = math.cos(yaw) * e1 + math.sin(yaw) * e2
        a2 = cross(up, a1)
    rot = np.array([a1, a2, up]).T
    return {
        "center": centre,
        "rotation": rot,
        "dims": np.array([length, width, height]),
        "yaw": yaw,
        "num_points": int(n_core),
        "table_fit": plane is not None,
    }, ""


def measure_objects(
    depth_m: np.ndarray,
    labels: np.ndarray,
    instances: np.ndarray,
    objects: Iterable,
    cam: CameraModel,
    cfg: GeometryConfig,
) -> tuple[list[Object3D], list[tuple[int, str]]]:
    """Boxes of all objects (``SegObject``-like: instance_id, class_id, class_name, score, bbox).

    Returns (measured objects in the given order, [(instance_id, reason)] for those without a pose).
    """
    if depth_m.shape[:2] != instances.shape or labels.shape != instances.shape:
        raise ValueError(
            f"depth {depth_m.shape[:2]}, labels {labels.shape} and instances {instances.shape} must have the same size"
        )
    if (cam.width, cam.height) != (instances.shape[1], instances.shape[0]):
        raise CameraError(
            f"camera model is {cam.width}x{cam.height}, the image {instances.shape[1]}x{instances.shape[0]}"
        )
    out: list[Object3D] = []
    failed: list[tuple[int, str]] = []
    for obj in objects:
        box, reason = measure_object(depth_m, labels, instances, obj.instance_id, obj.bbox, cam, cfg, obj.class_name)
        if box is None:
            failed.append((obj.instance_id, reason))
            continue
        out.append(Object3D(obj.instance_id, obj.class_id, obj.class_name, float(obj.score), **box))
    return out, failed
