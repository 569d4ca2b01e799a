#!/usr/bin/env python3
"""Copy the atWork training folders smaller without changing a decoded pixel, for a size-limited transfer.

JPEGs are re-written from their DCT coefficients with optimised Huffman tables (``jpeg_lossless``,
built from ``jpeg_lossless.c``), PNGs re-compressed at level 9 as read by the training code
(colour photos with cv2.IMREAD_COLOR, masks unchanged). A file is replaced only when the smaller
version decodes to exactly the same array; otherwise the original is copied.

    python scripts/device/pack_atwork.py ../shared/datasets/atwork carry/atwork carry/jpeg_lossless
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

TRAINING_PARTS = ("objects", "backgrounds/training", "white_backgrounds/training")


def smaller_same_pixels(src: Path, tool: str, tmp: Path) -> bytes:
    """The smallest encoding of ``src`` that decodes to the same array as ``src`` itself."""
    mode = cv2.IMREAD_UNCHANGED if "semantic_labels" in src.parts else cv2.IMREAD_COLOR
    ref = cv2.imread(str(src), mode)
    best = src.read_bytes()
    candidates = []
    if src.suffix.lower() in (".jpg", ".jpeg"):
        for progressive in ("1", "0"):
            subprocess.run([tool, str(src), str(tmp), progressive], check=True)
            candidates.append(tmp.read_bytes())
    elif src.suffix.lower() == ".png":
        ok, buf = cv2.imencode(".png", ref, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        candidates += [buf.tobytes()] if ok else []
    for c in candidates:
        if len(c) < len(best):
            dec = cv2.imdecode(np.frombuffer(c, np.uint8), mode)
            if dec is not None and dec.dtype == ref.dtype and np.array_equal(dec, ref):
                best = c
    return best


def main() -> int:
    src_root, dst_root, tool = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    before = after = 0
    tmp = dst_root.parent / ".pack_tmp"
    for part in TRAINING_PARTS:
        for src in sorted((src_root / part).rglob("*")):
            if not src.is_file():
                continue
            dst = dst_root / src.relative_to(src_root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            data = smaller_same_pixels(src, tool, tmp)
            dst.write_bytes(data)
            before += src.stat().st_size
            after += len(data)
    tmp.unlink(missing_ok=True)
    sys.stdout.write(f"{before} -> {after} bytes\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
