"""llmnotes: large language models from the math up to deployment."""

__version__ = "0.1.0"
