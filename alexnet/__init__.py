"""alexnet-deploy: AlexNet from scratch, trained, evaluated and exported for deployment."""

__version__ = "0.1.0"

from alexnet.model import AlexNet, AlexNetConfig, build_alexnet, count_parameters  # noqa: E402

__all__ = ["AlexNet", "AlexNetConfig", "build_alexnet", "count_parameters", "__version__"]
