"""Model definitions, one file per family. Importing this package registers every builder."""

from .squeezenet import (  # noqa: F401
    DesignSpace,
    Fire,
    SqueezeNet,
    Stage,
    build_stages,
    load_torchvision_state_dict,
)
from .shufflenet_v1 import ShuffleNetV1, ShuffleUnit, channel_shuffle  # noqa: F401
