"""Where the package's data files (config/, models/, launch/) are: the source tree, or the
share directory of an install (ament index, pip/colcon prefix)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "seg_perception"


def data_candidates(relative: str) -> list[Path]:
    """Places ``relative`` (e.g. ``config/classes.yaml``) may be, most specific first."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / relative]
    try:  # a ROS distro: the ament index knows the install's share dir
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / relative)
    except Exception:  # noqa: BLE001 - ament index absent or package not installed through it
        pass
    candidates.append(Path(os.sys.prefix) / "share" / PACKAGE / relative)
    # colcon install without the ament index on the path: <prefix>/lib/pythonX.Y/site-packages/<pkg>
    if len(here.parents) > 3:
        candidates.append(here.parents[3] / "share" / PACKAGE / relative)
    return candidates
