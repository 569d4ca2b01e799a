"""ros2 launch seg_perception seg.launch.py backend:=tflite_int8 image_topic:=/camera/image_raw

All logic lives in seg_perception.launch_args (unit-tested without ROS launch)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription
from seg_perception.launch_args import FASTDDS_PROFILE_VARIABLE, LAUNCH_ARGUMENTS, fastdds_profile_to_set, node_settings


def _actions(context, *_, **__):
    share = get_package_share_directory("seg_perception")
    args = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    s = node_settings(args, os.path.join(share, "config", "params.yaml"))
    actions = []
    profile = fastdds_profile_to_set(context.environment, share)
    if profile:
        actions.append(SetEnvironmentVariable(FASTDDS_PROFILE_VARIABLE, profile))
    actions.append(
        LifecycleNode(
            package="seg_perception",
            executable="seg-node",
            name=s["name"],
            output="screen",
            namespace=s["namespace"],
            parameters=s["parameters"],
            remappings=s["remappings"],
            ros_arguments=s["ros_arguments"],
        )
    )
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(n, default_value=d, description=desc) for n, (d, desc) in LAUNCH_ARGUMENTS.items()]
        + [OpaqueFunction(function=_actions)]
    )
