"""ament_python package. ROS wheels/debs are deliberately not in install_requires:
on a ROS machine they come from apt (rosdep), here from scripts/setup_env.sh."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "seg_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
        (
            f"share/{PACKAGE}/models",
            glob("models/*.tflite") + glob("models/*.onnx") + glob("models/*.json") + glob("models/*.yaml"),
        ),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "opencv-python-headless", "pillow"],
    extras_require={"runtime": ["onnxruntime", "ai-edge-litert", "rosbags", "matplotlib"]},
    zip_safe=True,
    maintainer="seg_perception developers",
    maintainer_email="seg-perception@example.org",
    description="Semantic segmentation node for RoboCup@Work objects on a small CPU",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "seg-node = seg_perception.node:main",
            "seg_node = seg_perception.node:main",  # the old name, kept as an alias
            "seg-demo = seg_perception.tools.demo:main",
            "seg-bench = seg_perception.tools.bench:main",
            "seg-eval = seg_perception.tools.eval:main",
            "seg-soak = seg_perception.tools.soak:main",
            "seg-make-bag = seg_perception.tools.make_bag:main",
            "seg-replay = seg_perception.tools.replay:main",
            "seg-geom-eval = seg_perception.tools.geom_eval:main",
        ],
    },
)
