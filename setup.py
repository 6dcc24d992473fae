"""The package list, the one thing pyproject.toml cannot say for rotator.

``[tool.setuptools.packages.find]`` names a package after its directory, so it
cannot install ``plugins/`` as ``rotator_plugins``; a fixed ``packages`` list
silently leaves out every subpackage added later (and data folders such as
``rotator/service/static``).  Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["rotator", "rotator.*"], exclude=["*.__pycache__"]),
        "rotator_plugins",
    ]
)
