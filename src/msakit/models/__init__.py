"""Built-in models, one family per file.

`msakit.registry` imports every module of this package on first use, so adding a
model is adding a file here with a `@register_model` class; nothing else lists names.
"""

from msakit.models.base import MSAModel

__all__ = ["MSAModel"]
