"""ros2 launch seg_perception seg.launch.py backend:=tflite_int8 image_topic:=/camera/image_raw

All logic lives in seg_perception.launch_args (unit-tested without ROS launch)."""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from seg_perception.launch_args import LAUNCH_ARGUMENTS, node_settings


def _node(context, *_, **__):
    share = get_package_share_directory("seg_perception")
    args = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    s = node_settings(args, os.path.join(share, "config", "params.yaml"))
    return [Node(package="seg_perception", executable="seg_node", name="seg_perception", output="screen",
                 namespace=s["namespace"], parameters=s["parameters"], remappings=s["remappings"])]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(n, default_value=d, description=desc) for n, (d, desc) in LAUNCH_ARGUMENTS.items()]
        + [OpaqueFunction(function=_node)])
