"""alexnet-deploy: AlexNet from scratch, trained, evaluated and exported for deployment."""

__version__ = "0.1.0"

try:
    import torch  # noqa: F401
except ModuleNotFoundError as exc:
    if exc.name != "torch":
        raise
    from runtime.launch import install_command

    # One line, and still named "torch": runtime.launch maps the missing package to its extra.
    raise ModuleNotFoundError(
        "alexnet (training, evaluation, export) needs PyTorch, which is not installed: "
        f"{install_command('train')}; the runtime alone needs no torch (import runtime, alexnet-run)",
        name="torch",
    ) from None

from alexnet.model import AlexNet, AlexNetConfig, build_alexnet, count_parameters  # noqa: E402

__all__ = ["AlexNet", "AlexNetConfig", "build_alexnet", "count_parameters", "__version__"]
