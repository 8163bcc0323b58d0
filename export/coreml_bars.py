"""coremltools' own progress bars ("Converting PyTorch Frontend ==> MIL Ops", "Running MIL ... pipeline"),
silenced while alexnet-export or alexnet-report converts a model.

coremltools' conversion functions take no option for them, and tqdm reads TQDM_DISABLE only when tqdm
itself is imported (it would also silence this project's own bars). So, for the length of a `with
quiet_progress_bars():` block, every loaded coremltools module's own name for the tqdm class is
rebound to a subclass that starts disabled, and restored afterwards. Module attributes are process-wide:
a lock and a count make nested and concurrent blocks safe (the names are restored when the last block
ends); a thread that uses coremltools outside any block meanwhile only loses its bars.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[Any, str, Any]] = []  # (module, attribute, the tqdm class it held)


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No tqdm bar from coremltools inside the block; everything restored when the last block ends."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved[:] = _rebind()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for module, name, value in _saved:
                    setattr(module, name, value)
                _saved.clear()


def _rebind() -> list[tuple[Any, str, Any]]:
    from tqdm import tqdm

    class QuietTqdm(tqdm):  # a subclass, so that class attributes (tqdm.write, ...) still work
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    saved = []
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "coremltools" or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if value is tqdm:
                saved.append((module, attr, value))
                setattr(module, attr, QuietTqdm)
    return saved
