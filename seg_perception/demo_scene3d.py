"""Rendered table-top scenes with depth and exact 3D truth: no dataset pixels.

A pinhole camera (the same intrinsics ``seg-make-bag`` writes as CameraInfo) looks at a table
from 0.45-0.6 m, straight down or tilted up to 45 degrees. Objects are solid look-alikes of
the atWork objects at their nominal sizes (``size_mm`` in ``config/classes.yaml``): profiles,
containers, boxes as boxes; bolt, tube, axis, motor as lying cylinders; nuts as hexagonal
prisms; bearing and distance tube as discs. Every pixel is ray-cast, so the depth image
(16UC1 millimetres), labels and instance map are exact, and each object's truth (centre in
the optical frame, dimensions, yaw by :func:`seg_perception.geometry.yaw_in_table`) is known.
Objects do not touch or occlude each other in the image. Deterministic by seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .classes import load_classes
from .demo_frames import _table
from .geometry import CameraModel, default_camera, yaw_in_table
from .geometry_eval import ELONGATED_RATIO
from .size_pairs import load_object_facts

# class -> (shape, colour). Shapes: box, cyl_x (lying cylinder along the length), cyl_z (disc),
# hex_z (nut lying flat: across corners along the length).
LOOKS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "f20_20_B": ("box", (40, 40, 45)),
    "s40_40_B": ("box", (35, 35, 40)),
    "f20_20_G": ("box", (150, 150, 155)),
    "s40_40_G": ("box", (140, 140, 150)),
    "m20_100": ("cyl_x", (170, 170, 175)),
    "m20": ("hex_z", (185, 185, 190)),
    "m30": ("hex_z", (175, 175, 180)),
    "r20": ("cyl_x", (30, 30, 30)),
    "bearing_box_ax01": ("box", (160, 160, 165)),
    "bearing": ("cyl_z", (200, 200, 205)),
    "axis": ("cyl_x", (165, 165, 160)),
    "distance_tube": ("cyl_z", (190, 190, 185)),
    "motor": ("cyl_x", (60, 60, 60)),
    "container_box_blue": ("box", (30, 70, 200)),
    "container_box_red": ("box", (200, 30, 35)),
    "bearing_box_ax16": ("box", (150, 150, 160)),
    "em_01": ("box", (230, 120, 20)),
    "em_02": ("box", (25, 25, 25)),
}


@dataclass
class Truth:
    instance_id: int
    class_id: int
    class_name: str
    center: np.ndarray  # (3,) optical frame, metres
    rotation: np.ndarray  # (3, 3) columns: length, width, up axes in the optical frame
    dims: np.ndarray  # (3,) length, width, height in metres
    yaw: float  # radians, geometry.yaw_in_table convention
    elongated: bool
    symmetric: bool


@dataclass
class Scene:
    rgb: np.ndarray  # HxWx3 uint8
    labels: np.ndarray  # HxW uint8 full-set class ids
    instances: np.ndarray  # HxW uint16 (0 = table)
    depth_mm: np.ndarray  # HxW uint16 millimetres (16UC1)
    camera: CameraModel
    truths: list[Truth]
    tilt_deg: float


def _shape_dims(shape: str, size: tuple[float, float, float]) -> np.ndarray:
    """Extents of the rendered solid along its length, width, up axes."""
    length, width, height = size
    if shape == "cyl_x":
        d = max(width, height)
        return np.array([length, d, d])
    if shape == "cyl_z":
        d = max(length, width)
        return np.array([d, d, height])
    if shape == "hex_z":  # width = across flats; across corners follows from it
        return np.array([width / math.cos(math.pi / 6), width, height])
    return np.array(size, np.float64)


def _slab(o: np.ndarray, d: np.ndarray, axis: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry/exit ray parameters of |p . axis| <= half, and the entry normal's sign."""
    od, dd = o @ axis, d @ axis
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - od) / dd, (half - od) / dd
    parallel = np.abs(dd) < 1e-12
    inside = np.abs(od) <= half
    t1 = np.where(parallel, np.where(inside, -np.inf, np.inf), t1)
    t2 = np.where(parallel, np.where(inside, np.inf, -np.inf), t2)
    return np.minimum(t1, t2), np.maximum(t1, t2), -np.sign(dd)


def _intersect(shape: str, dims: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray hits of a solid centred at the origin of its frame: (t or inf, entry normal in that frame)."""
    n = len(d)
    half = dims / 2.0
    if shape in ("box", "hex_z"):
        if shape == "box":
            axes = [np.eye(3)[k] for k in range(3)]
            halves = list(half)
        else:
            axes = [np.array([math.cos(a), math.sin(a), 0.0]) for a in (math.pi / 2, math.pi / 6, -math.pi / 6)]
            axes.append(np.array([0.0, 0.0, 1.0]))
            halves = [half[1]] * 3 + [half[2]]
        tnear, tfar = np.full(n, -np.inf), np.full(n, np.inf)
        normal = np.zeros((n, 3))
        for ax, hf in zip(axes, halves, strict=False):
            t1, t2, sgn = _slab(o, d, ax, hf)
            better = t1 > tnear
            normal[better] = sgn[better, None] * ax
            tnear = np.maximum(tnear, t1)
            tfar = np.minimum(tfar, t2)
    else:
        k = 0 if shape == "cyl_x" else 2  # cylinder axis
        r = half[1] if shape == "cyl_x" else half[0]
        p = [i for i in range(3) if i != k]
        a = d[:, p[0]] ** 2 + d[:, p[1]] ** 2
        b = 2 * (o[:, p[0]] * d[:, p[0]] + o[:, p[1]] * d[:, p[1]])
        c = o[:, p[0]] ** 2 + o[:, p[1]] ** 2 - r * r
        disc = b * b - 4 * a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            sq = np.sqrt(np.maximum(disc, 0))
            tc1, tc2 = (-b - sq) / (2 * a), (-b + sq) / (2 * a)
        miss = disc < 0
        tc1, tc2 = np.where(miss, np.inf, tc1), np.where(miss, -np.inf, tc2)
        ax = np.eye(3)[k]
        ts1, ts2, sgn = _slab(o, d, ax, half[k])
        side = tc1 >= ts1
        tnear, tfar = np.maximum(tc1, ts1), np.minimum(tc2, ts2)
        hit_side = o + d * tnear[:, None]
        radial = hit_side.copy()
        radial[:, k] = 0
        with np.errstate(invalid="ignore"):
            radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-12)
        normal = np.where(side[:, None], radial, sgn[:, None] * ax)
    hit = (tnear <= tfar) & (tnear > 0) & np.isfinite(tnear)
    return np.where(hit, tnear, np.inf), normal


def _camera_pose(tilt_deg: float, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """World (table z = 0, z up) -> camera: rotation with the optical axes as columns, and position."""
    t = math.radians(tilt_deg)
    z = np.array([0.0, math.sin(t), -math.cos(t)])
    x = np.array([1.0, 0.0, 0.0])
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1), -distance * z


@dataclass(frozen=True)
class Placement:
    """An object on the table: class, table position (metres, world x right / y away from the camera,
    origin where the optical axis meets the table) and yaw about the table's up axis (radians)."""

    class_name: str
    x: float
    y: float
    yaw: float


def render_scene(
    seed: int,
    hw: tuple[int, int] = (480, 640),
    tilt_deg: float | None = None,
    max_objects: int = 5,
    classes: list[str] | None = None,
) -> Scene:
    """One random scene. ``tilt_deg`` None: 0, 25 or 45 degrees by seed. ``classes``: the classes to draw from."""
    rng = np.random.default_rng(seed)
    h, w = hw
    tilt = float([0.0, 25.0, 45.0][seed % 3] if tilt_deg is None else tilt_deg)
    distance = float(rng.uniform(0.45, 0.6))
    cam = default_camera(w, h)
    r_wc, c_w = _camera_pose(tilt, distance)
    facts = load_object_facts()
    pool = classes or list(LOOKS)
    placed: list[tuple[np.ndarray, float, tuple[int, int, int, int]]] = []
    chosen: list[Placement] = []
    for _ in range(int(rng.integers(2, max_objects + 1))):
        for _attempt in range(30):
            name = str(rng.choice(pool))
            dims = _shape_dims(LOOKS[name][0], facts.size_m[name])
            u, v = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.25 * h, 0.8 * h)
            ray_w = r_wc @ np.array([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, 1.0])
            if ray_w[2] >= -1e-6:
                continue
            ground = c_w + ray_w * (-c_w[2] / ray_w[2])
            p = Placement(name, float(ground[0]), float(ground[1]), float(rng.uniform(-math.pi, math.pi)))
            box = _pixel_box(p, dims, r_wc, c_w, cam)
            radius = 0.5 * math.hypot(dims[0], dims[1])
            if box is None or any(math.hypot(p.x - c[0], p.y - c[1]) < radius + rr + 0.02 for c, rr, _ in placed):
                continue
            if any(
                not (box[2] + 3 < b[0] or b[2] + 3 < box[0] or box[3] + 3 < b[1] or b[3] + 3 < box[1])
                for _, _, b in placed
            ):
                continue  # pixel boxes apart: no occlusion, no touching masks
            placed.append((np.array([p.x, p.y]), radius, box))
            chosen.append(p)
            break
    return render_objects(chosen, hw, tilt, distance, rng)


def _pixel_box(
    p: Placement, dims: np.ndarray, r_wc: np.ndarray, c_w: np.ndarray, cam: CameraModel
) -> tuple[int, int, int, int] | None:
    """The object's image box (x0, y0, x1, y1) with a small margin, None when not fully in view."""
    r_wo = _yaw_matrix(p.yaw)
    centre_w = np.array([p.x, p.y, dims[2] / 2])
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * dims / 2
    pc = (r_wc.T @ ((r_wo @ corners.T).T + centre_w - c_w).T).T
    if np.any(pc[:, 2] <= 0.05):
        return None
    pu, pv = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx, cam.fy * pc[:, 1] / pc[:, 2] + cam.cy
    box = (
        int(math.floor(pu.min())) - 2,
        int(math.floor(pv.min())) - 2,
        int(math.ceil(pu.max())) + 3,
        int(math.ceil(pv.max())) + 3,
    )
    if box[0] < 2 or box[1] < 2 or box[2] > cam.width - 2 or box[3] > cam.height - 2:
        return None
    return box


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def render_objects(
    placements: list[Placement],
    hw: tuple[int, int] = (480, 640),
    tilt_deg: float = 0.0,
    distance: float = 0.5,
    rng: np.random.Generator | None = None,
    palette_colours: bool = False,
) -> Scene:
    """Ray-cast the given objects (each fully in view; ValueError otherwise) under a camera ``distance``
    metres from the table along its optical axis, tilted ``tilt_deg`` from straight down.

    ``palette_colours``: flat class colours on a black table (the class file's palette), which the
    tests' nearest-colour model segments exactly."""
    rng = rng or np.random.default_rng(0)
    h, w = hw
    names = load_classes("full").names
    facts = load_object_facts()
    cam = default_camera(w, h)
    r_wc, c_w = _camera_pose(tilt_deg, distance)
    up_c = r_wc.T @ np.array([0.0, 0.0, 1.0])

    us, vs = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([(us - cam.cx) / cam.fx, (vs - cam.cy) / cam.fy, np.ones_like(us)], axis=-1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)

    # The table (world z = 0) everywhere: t = -(n.o + d) / (n.ray) in camera coordinates.
    d_table = -float(up_c @ (r_wc.T @ (np.zeros(3) - c_w)))
    with np.errstate(divide="ignore"):
        t_table = -d_table / (rays @ up_c)
    t_best = np.where(t_table > 0, t_table, np.inf)
    obj_at = np.zeros((h, w), np.int32)  # 0 = table, k = k-th object
    normal_at = np.zeros((h, w, 3))
    normal_at[:] = -up_c

    truths: list[Truth] = []
    for k, p in enumerate(placements, start=1):
        shape = LOOKS[p.class_name][0]
        dims = _shape_dims(shape, facts.size_m[p.class_name])
        box = _pixel_box(p, dims, r_wc, c_w, cam)
        if box is None:
            raise ValueError(f"{p} is not fully in view")
        r_co = r_wc.T @ _yaw_matrix(p.yaw)
        centre_c = r_wc.T @ (np.array([p.x, p.y, dims[2] / 2]) - c_w)
        x0, y0, x1, y1 = box
        sub = rays[y0:y1, x0:x1].reshape(-1, 3)
        o_obj = np.broadcast_to(r_co.T @ (-centre_c), sub.shape)
        t, nrm = _intersect(shape, dims, o_obj, sub @ r_co)
        t = t.reshape(y1 - y0, x1 - x0)
        closer = t < t_best[y0:y1, x0:x1]
        t_best[y0:y1, x0:x1] = np.where(closer, t, t_best[y0:y1, x0:x1])
        obj_at[y0:y1, x0:x1][closer] = k
        normal_at[y0:y1, x0:x1][closer] = (nrm @ r_co.T).reshape(y1 - y0, x1 - x0, 3)[closer]
        truths.append(
            Truth(
                k,
                names.index(p.class_name),
                p.class_name,
                centre_c,
                r_co,
                dims,
                yaw_in_table(r_co[:, 0], up_c),
                bool(dims[0] >= ELONGATED_RATIO * dims[1]),
                p.class_name in facts.symmetric,
            )
        )

    z = t_best * rays[:, :, 2]
    depth_mm = np.where(np.isfinite(z), np.clip(np.rint(z * 1000.0), 0, 65535), 0).astype(np.uint16)
    lut_cls = np.array([0] + [t.class_id for t in truths], np.uint8)
    labels = lut_cls[obj_at]
    instances = obj_at.astype(np.uint16)
    if palette_colours:
        return Scene(load_classes("full").palette()[labels], labels, instances, depth_mm, cam, truths, float(tilt_deg))
    # Colour: textured table; objects lit from the camera (Lambert) with a little grain.
    img = _table(rng, h, w).astype(np.float32)
    lambert = np.clip(-(normal_at * rays).sum(axis=-1), 0, 1)
    grain = rng.normal(0, 6, (h, w)).astype(np.float32)
    for t in truths:
        m = obj_at == t.instance_id
        base = np.asarray(LOOKS[t.class_name][1], np.float32)
        shade = (0.45 + 0.55 * lambert[m])[:, None]
        img[m] = base[None, :] * shade + grain[m][:, None]
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    return Scene(rgb, labels, instances, depth_mm, cam, truths, float(tilt_deg))
