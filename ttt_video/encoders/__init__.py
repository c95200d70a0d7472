"""Frame encoders (pixels -> tokens) and decoders (tokens -> pixels); see ``base`` for the contract."""

from ttt_video.encoders.base import FrameEncoder
from ttt_video.encoders.decoders import ConvDecoder, LinearUnpatchify
from ttt_video.encoders.patch import PatchEmbed, TubeletEmbed
from ttt_video.encoders.timm import TimmFrameEncoder

__all__ = [
    "ConvDecoder",
    "FrameEncoder",
    "LinearUnpatchify",
    "PatchEmbed",
    "TimmFrameEncoder",
    "TubeletEmbed",
]
