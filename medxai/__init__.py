"""medxai: explain 3D medical-imaging models, measure the explanations, keep the geometry."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medxai")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
