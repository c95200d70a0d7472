"""Any timm model as a frame encoder: its final feature map as N tokens per frame (or pooled to 1).

Letters: B batch, F frames, C channels, H height, W width, N tokens per frame, D = the model's
``num_features``.

Models are always built with ``pretrained=False`` (nothing is downloaded); weights come only from
a local file the caller names. CNNs give ``h * w`` tokens (their last feature map, row-major);
ViT-style models give their patch tokens (class and register tokens dropped).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from ttt_video.data.video.frames import frames_to_float
from ttt_video.encoders.base import FrameEncoder, check_frames


def load_local_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a local state dict (optionally under a ``state_dict``/``model`` key) into ``model``.

    Keys of a classifier head the encoder does not have are ignored; any missing key raises.
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    missing, _unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(
            f"{path}: weights miss {len(missing)} keys of the model, e.g. {missing[:3]}"
        )


class TimmFrameEncoder(FrameEncoder):
    """Wrap ``timm.create_model(name, pretrained=False)``: ``[B, F, C, H, W] -> [B, F * N, D]``.

    Args:
        name: a timm model name, e.g. ``"resnet18"`` or ``"vit_tiny_patch16_224"``.
        image_size: input ``(H, W)`` (or one int); passed to ViTs as ``img_size``.
        in_chans: input channels.
        pool: average the tokens of each frame into one (``N = 1``).
        weights: a local weights file, or None for random initialisation.
        frozen: freeze the model's parameters (and keep it in eval mode).
        model_kwargs: more ``timm.create_model`` arguments.
    """

    def __init__(
        self,
        name: str,
        image_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        pool: bool = False,
        weights: str | Path | None = None,
        frozen: bool = False,
        **model_kwargs,
    ):
        super().__init__()
        self.image_size = (
            (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        )
        if "vit" in name or "deit" in name:
            model_kwargs.setdefault("img_size", self.image_size)
        self.model = timm.create_model(
            name, pretrained=False, num_classes=0, in_chans=in_chans, **model_kwargs
        )
        if weights is not None:
            load_local_weights(self.model, weights)
        self.in_chans, self.pool, self.frozen = in_chans, pool, frozen
        self.prefix = int(getattr(self.model, "num_prefix_tokens", 0))
        self.dim = int(self.model.num_features)
        if frozen:
            self.model.requires_grad_(False).eval()
        self.tokens_per_frame = self._count_tokens()

    def _count_tokens(self) -> int:
        """Tokens per frame, from one eval-mode pass (no BatchNorm statistics touched)."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            n = self._tokens(torch.zeros(1, self.in_chans, *self.image_size)).shape[1]
        self.model.train(was_training)
        return n

    def train(self, mode: bool = True):
        """Switch train/eval; a frozen model stays in eval mode."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``[B', C, H, W]`` -> ``[B', N, D]`` from the model's final features."""
        x = self.model.forward_features(images)
        x = x.flatten(2).transpose(1, 2) if x.ndim == 4 else x[:, self.prefix :]
        return x.mean(dim=1, keepdim=True) if self.pool else x

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, F, C, H, W]`` -> ``[B, F * N, D]`` (frame-major)."""
        check_frames(frames, self.in_chans, self.image_size)
        b = frames.shape[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            tokens = self._tokens(frames_to_float(frames).flatten(0, 1))
        return tokens.reshape(b, -1, self.dim)
