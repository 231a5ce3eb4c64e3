"""llmnotes: large language models from the math up to deployment.

The top-level names are imported lazily so that ``import llmnotes`` stays fast and a page
that needs only the math chapter does not pay for the model code.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "GPT": "llmnotes.model",
    "GPTConfig": "llmnotes.model",
    "BPETokenizer": "llmnotes.tokenizer",
    "load_pretrained": "llmnotes.pretrained",
    "GenerationConfig": "llmnotes.sampling",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'llmnotes' has no attribute {name!r}")


def __dir__():
    return __all__
