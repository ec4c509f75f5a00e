"""Model definitions. Importing this package registers every builder."""

from .squeezenet import (  # noqa: F401
    DesignSpace,
    Fire,
    SqueezeNet,
    Stage,
    build_stages,
    load_torchvision_state_dict,
    load_torchvision_weights,
)
