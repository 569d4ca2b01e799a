"""The launch file's logic (seg_perception.launch_args), without ROS launch."""

import pytest

from seg_perception.launch_args import LAUNCH_ARGUMENTS, fastdds_profile_to_set, node_settings


def test_arguments_left_at_their_default_do_not_override_the_params_file():
    s = node_settings({}, "/share/params.yaml")
    assert s["parameters"] == ["/share/params.yaml"]  # no dict after it: the file decides backend and transport
    s = node_settings({"params_file": "/my.yaml"}, "/share/params.yaml")
    assert s["parameters"] == ["/my.yaml"]
    assert {n: d for n, (d, _) in LAUNCH_ARGUMENTS.items()}["backend"] == ""


def test_explicit_arguments_win_over_the_params_file():
    s = node_settings(
        {
            "params_file": "/my.yaml",
            "backend": "espnet",
            "use_compressed": "true",
            "use_sim_time": "True",
            "autostart": "false",
        },
        "/share/params.yaml",
    )
    assert s["parameters"] == [
        "/my.yaml",
        {"backend": "espnet", "transport": "compressed", "use_sim_time": True, "autostart": False},
    ]
    assert node_settings({"use_compressed": "off"}, "/p.yaml")["parameters"][1] == {"transport": "raw"}


def test_topics_name_namespace_and_log_level():
    s = node_settings(
        {"image_topic": "/cam/rgb/", "namespace": "arm", "node_name": "seg_left", "log_level": "DEBUG"}, "/p.yaml"
    )
    # both remappings: the transport (from the file or use_compressed) picks the one the node subscribes to
    assert s["remappings"][:2] == [("image", "/cam/rgb"), ("image/compressed", "/cam/rgb/compressed")]
    assert s["namespace"] == "arm" and s["name"] == "seg_left"
    assert s["ros_arguments"] == ["--log-level", "debug"]
    assert node_settings({}, "/p.yaml")["ros_arguments"] == ["--log-level", "info"]


def test_depth_arguments_remap_depth_and_camera_info_and_set_use_depth_only_when_given():
    s = node_settings({}, "/p.yaml")
    assert s["remappings"] == [
        ("image", "/camera/image_raw"),
        ("image/compressed", "/camera/image_raw/compressed"),
        ("depth", "/camera/depth"),
        ("camera_info", "/camera/camera_info"),
    ]
    assert s["parameters"] == ["/p.yaml"]  # use_depth left to the file
    s = node_settings(
        {
            "use_depth": "true",
            "depth_topic": "/cam/aligned_depth_to_color/image_raw/",
            "camera_info_topic": "/cam/color/camera_info",
        },
        "/p.yaml",
    )
    assert s["parameters"] == ["/p.yaml", {"use_depth": True}]
    assert s["remappings"][2:] == [
        ("depth", "/cam/aligned_depth_to_color/image_raw"),
        ("camera_info", "/cam/color/camera_info"),
    ]
    assert node_settings({"use_depth": "off"}, "/p.yaml")["parameters"] == ["/p.yaml", {"use_depth": False}]


def test_depth_defaults_are_the_topics_of_the_projects_bags():
    """seg-make-bag --demo writes depth and camera info where the launch file looks by default."""
    pytest.importorskip("rosbags")
    from seg_perception.tools import bags

    defaults = {n: d for n, (d, _) in LAUNCH_ARGUMENTS.items()}
    assert (defaults["image_topic"], defaults["depth_topic"], defaults["camera_info_topic"]) == (
        bags.CAMERA_TOPIC,
        bags.DEPTH_TOPIC,
        bags.CAMERA_INFO_TOPIC,
    )


@pytest.mark.parametrize(
    "args, words",
    [
        ({"backnd": "x"}, ["valid", "backend"]),
        ({"use_compressed": "maybe"}, ["true or false"]),
        ({"autostart": "2"}, ["autostart", "true or false"]),
        ({"log_level": "loud"}, ["log_level", "debug"]),
        ({"node_name": " "}, ["node_name"]),
        ({"use_depth": "yes please"}, ["use_depth", "true or false"]),
        ({"depth_topic": " "}, ["depth_topic", "/camera/depth"]),
        ({"camera_info_topic": ""}, ["camera_info_topic"]),
    ],
)
def test_bad_arguments_name_the_valid_values(args, words):
    with pytest.raises(ValueError) as e:
        node_settings(args, "/p.yaml")
    for w in words:
        assert w in str(e.value)


def test_fastdds_profile_is_set_only_when_the_user_has_none():
    assert fastdds_profile_to_set({}, "/opt/share/seg_perception") == "/opt/share/seg_perception/config/fastdds_shm.xml"
    assert fastdds_profile_to_set({"FASTDDS_DEFAULT_PROFILES_FILE": ""}, "/s") == "/s/config/fastdds_shm.xml"
    assert fastdds_profile_to_set({"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}, "/s") is None


def test_launch_file_only_forwards(repo_root):
    src = (repo_root / "launch" / "seg.launch.py").read_text()
    assert "node_settings(" in src and "LAUNCH_ARGUMENTS" in src and "fastdds_profile_to_set(" in src
    assert "LifecycleNode(" in src and 'executable="seg-node"' in src


def test_the_shipped_params_file_applies_to_any_node_name(repo_root):
    import yaml

    doc = yaml.safe_load((repo_root / "config" / "params.yaml").read_text())
    assert list(doc) == ["/**"]
