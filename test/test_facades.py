"""Every name a package advertises (``__all__``) imports: a facade never points at a module or name
that moved or no longer exists. Packages found by walking the source tree, so new ones are covered."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _packages():
    for top in ("seg_perception", "training"):
        yield top
        for info in pkgutil.walk_packages([str(ROOT / top)], prefix=f"{top}."):
            if info.ispkg:
                yield info.name


PACKAGES = sorted(set(_packages()))


def test_the_walk_finds_the_facades():
    assert {
        "seg_perception.backends",
        "training.data",
        "training.models",
        "training.export",
        "training.quantize",
    } <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_advertised_name_imports(package):
    mod = importlib.import_module(package)
    missing = []
    for name in getattr(mod, "__all__", ()):
        try:
            getattr(mod, name)
        except (AttributeError, ImportError) as e:
            missing.append(f"{name}: {type(e).__name__}: {e}")
    assert not missing, f"{package} advertises names that do not import: {missing}"
