"""Maps the top-level ``cli/`` tree to ``medxai.cli`` and lists every subpackage of both trees."""
from setuptools import find_packages, setup


def _packages() -> list[str]:
    library = ["medxai"] + [f"medxai.{name}" for name in find_packages("medxai")]
    commands = ["medxai.cli"] + [f"medxai.cli.{name}" for name in find_packages("cli")]
    return library + commands


setup(packages=_packages(), package_dir={"medxai": "medxai", "medxai.cli": "cli"})
