"""PocketFlow's ResNets and the DCP paper's PreResNet (`resnet.py`), with input-channel masks."""

from dcp_tf.models.resnet import FAMILIES, AuxHead, ResNet, build

__all__ = ["FAMILIES", "AuxHead", "ResNet", "build"]
