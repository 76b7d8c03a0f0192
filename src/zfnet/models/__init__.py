"""Models of the paper, addressed by the paper's layer names (``conv1..conv5, fc6, fc7, fc8``).

``build(name, num_classes, **overrides)``, ``names()``, ``feature_shapes(model, input_size)``;
see :mod:`zfnet.models.zfnet` for the architectures, the naming scheme and the override keys.
"""

from zfnet.models.zfnet import (
    DEFAULT_LRN,
    DEFAULTS,
    REMOVABLE,
    PaperCNN,
    build,
    feature_shapes,
    names,
)

__all__ = ["DEFAULTS", "DEFAULT_LRN", "PaperCNN", "REMOVABLE", "build", "feature_shapes", "names"]
