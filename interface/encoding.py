"""The input encoding: which integer pixels the hardware reads for a model configuration.

Every model input is a grid of integer *pixels*; the float model sees ``x = pixel · 2**scale_exp``
(``spikeforge.model.encoding`` converts, strictly). Defined once here: the bundle stores the encoding
of its config (``manifest["input"]``) and the bundle checker requires exactly this one.
"""

import numpy as np

__all__ = ["input_encoding", "bit_planes"]


def input_encoding(config):
    """The input encoding (``{"shape", "scale_exp", "max", "events"}``) of a config (an object with
    ``as_dict()`` or a dict): binary events ``[T, C, H, W]`` for the dvs family; pixels 0..16 in steps
    of 1/16 for the digits data set; pixels 0..255 in steps of 1/256 for other images (``[C, H, W]``)."""
    if hasattr(config, "as_dict"):
        config = config.as_dict()
    frame = [config["in_channels"], config["img_size"], config["img_size"]]
    if config["family"] == "dvs":
        return {"shape": [config["T"], *frame], "scale_exp": 0, "max": 1, "events": True}
    if config.get("dataset") == "digits":
        return {"shape": frame, "scale_exp": -4, "max": 16, "events": False}
    return {"shape": frame, "scale_exp": -8, "max": 255, "events": False}


def bit_planes(pixels, planes):
    """Spike channels ``[T, C·P, H, W]`` of integer pixels ``[C, H, W]`` (one static frame) or
    ``[T, C, H, W]`` (events): channel ``c·P + b`` holds bit ``b`` of channel ``c``, the layout in which
    the driver writes the input and the first conv reads it."""
    x = np.asarray(pixels, dtype=np.int64)
    x = x[None] if x.ndim == 3 else x
    T, C, H, W = x.shape
    bits = (x[:, :, None] >> np.arange(planes)[None, None, :, None, None]) & 1
    return bits.reshape(T, C * planes, H, W)
