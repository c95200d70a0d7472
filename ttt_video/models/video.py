"""Video models: frame encoder -> frame-major token stream -> the LM's Backbone -> heads.

Letters: ``B`` batch, ``F`` frames in this call, ``F0`` context frames, ``R`` rollout horizon,
``C`` channels, ``S`` frame side (``H = W = S``), ``N`` tokens per frame, ``D`` model width,
``K`` classes.

The tokens of frame ``t`` are read after those of frames ``< t``, so the backbone's output on
frame ``t`` depends only on frames ``<= t``. Two heads read it, frame by frame:

- prediction: frame ``t+1`` = frame ``t`` + decode(mix(tokens of frame t)) (``residual``), the
  mixer being a token-mixing MLP within frame ``t`` (so causality holds frame by frame);
- classification: logits ``[B, F, K]`` from the mean of each frame's tokens: a label can be read
  at any moment of the stream.

Every call takes and returns a ``VideoState`` (backbone state + the last frame), so a video can
be fed in chunks, or frame by frame, with the same result as one call on the whole clip; TTT
backbones keep a state of fixed size, so streaming memory does not grow with the video.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ttt_video.data.video.frames import frames_to_float
from ttt_video.encoders import ConvDecoder, LinearUnpatchify, PatchEmbed, TimmFrameEncoder
from ttt_video.layers import RMSNorm
from ttt_video.models.backbone import Backbone, BackboneState
from ttt_video.models.pretrained import Pretrained
from ttt_video.models.video_config import VideoConfig


@dataclass(frozen=True)
class VideoState:
    """Recurrent state of a batch of video streams.

    Attributes:
        backbone: the backbone's state (None before the first frame).
        last_frame: ``[B, C, S, S]`` float in [0, 1], the last frame seen (None at the start).
        frames: frames consumed so far.
    """

    backbone: BackboneState | None
    last_frame: Tensor | None
    frames: int

    def nbytes(self) -> int:
        """Memory held by the state's tensors, in bytes."""
        frame = 0 if self.last_frame is None else self.last_frame.numel() * 4
        return frame + (0 if self.backbone is None else self.backbone.nbytes())

    def detach(self) -> VideoState:
        """A copy cut from the autograd graph."""
        last = None if self.last_frame is None else self.last_frame.detach()
        backbone = None if self.backbone is None else self.backbone.detach()
        return VideoState(backbone, last, self.frames)


torch.export.register_dataclass(VideoState)


@dataclass(frozen=True)
class VideoOutput:
    """What one call returns.

    Attributes:
        features: ``[B, F, N, D]`` backbone features of each frame.
        next_frames: ``[B, F, C, S, S]``: entry ``t`` predicts the frame after frame ``t``
            (None without a prediction head).
        logits: ``[B, F, K]`` class logits after each frame (None without a class head).
        state: the state after this call.
    """

    features: Tensor
    next_frames: Tensor | None
    logits: Tensor | None
    state: VideoState


torch.export.register_dataclass(VideoOutput)


class FrameMixer(nn.Module):
    """Residual token-mixing MLP within each frame: ``[B, F, N, D] -> [B, F, N, D]``."""

    def __init__(self, tokens: int, width: int, eps: float) -> None:
        super().__init__()
        self.norm = RMSNorm(width, eps)
        self.mix = nn.Sequential(
            nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, F, N, D]`` -> same shape; token ``i`` of frame ``t`` sees all of frame ``t``."""
        return x + self.mix(self.norm(x).transpose(-1, -2)).transpose(-1, -2)


def _build_encoder(cfg: VideoConfig) -> nn.Module:
    in_chans = cfg.channels * (2 if cfg.motion_input else 1)
    if cfg.encoder == "patch":
        return PatchEmbed(cfg.image_size, cfg.patch_size, cfg.width, in_chans)
    return TimmFrameEncoder(
        cfg.timm_name,
        cfg.image_size,
        in_chans,
        pool=cfg.timm_pool,
        weights=cfg.timm_weights,
        frozen=cfg.timm_frozen,
    )


class VideoModel(Pretrained, nn.Module):
    """Frame prediction and/or per-frame classification over a video stream (module docstring).

    ``self.cfg`` is the config exactly as given; the backbone runs ``cfg.backbone_config(N)``
    (``self.backbone.cfg``), whose TTT mini-batch is ``self.mini_batch_size`` tokens.

    ``save_pretrained(dir)`` / ``VideoModel.from_pretrained(dir)``: a portable folder
    (``ttt_video.models.pretrained``).
    """

    model_type = "video"
    config_class = VideoConfig

    def __init__(self, cfg: VideoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _build_encoder(cfg)
        self.tokens_per_frame = N = self.encoder.tokens_per_frame
        self.in_proj = (
            nn.Identity()
            if self.encoder.dim == cfg.width
            else nn.Linear(self.encoder.dim, cfg.width)
        )
        self.backbone = Backbone(cfg.backbone_config(N))
        self.mixer = FrameMixer(N, cfg.width, cfg.norm_eps) if cfg.frame_mixer else None
        self.decoder = self._build_decoder(cfg)
        self.classifier = nn.Linear(cfg.width, cfg.num_classes) if cfg.num_classes else None
        if self.decoder is not None and cfg.residual:
            last = self.decoder.proj if cfg.decoder == "linear" else self.decoder.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @property
    def mini_batch_size(self) -> int:
        """``b``, the TTT mini-batch in tokens the backbone runs with (``frames_per_mini_batch *
        tokens_per_frame``, or the config's ``mini_batch_size`` when ``frames_per_mini_batch``
        is 0)."""
        return self.backbone.cfg.mini_batch_size

    @staticmethod
    def _build_decoder(cfg: VideoConfig) -> nn.Module | None:
        if cfg.decoder == "linear":
            return LinearUnpatchify(cfg.width, cfg.image_size, cfg.patch_size, cfg.channels)
        if cfg.decoder == "conv":
            grid = (cfg.grid, cfg.grid)
            return ConvDecoder(cfg.width, grid, cfg.image_size, cfg.channels, cfg.decoder_hidden)
        return None

    def check_frames(self, frames: Tensor) -> None:
        """Raise ``ValueError`` unless ``frames`` is ``[B, F >= 1, C, S, S]``."""
        S, C = self.cfg.image_size, self.cfg.channels
        if frames.ndim != 5 or frames.shape[1] == 0 or tuple(frames.shape[2:]) != (C, S, S):
            raise ValueError(
                f"frames: expected [B, F >= 1, {C}, {S}, {S}], got {tuple(frames.shape)}"
            )

    def encode(self, frames: Tensor, last_frame: Tensor | None) -> Tensor:
        """``frames: [B, F, C, S, S]`` (float in [0, 1]) -> tokens ``[B, F * N, D]``.

        With ``motion_input`` each frame is stacked with its difference to the frame before
        (``last_frame [B, C, S, S]`` before the first one; zero difference at the stream start).
        """
        if self.cfg.motion_input:
            prev = frames[:, :1] if last_frame is None else last_frame[:, None]
            before = torch.cat((prev, frames[:, :-1]), dim=1)
            frames = torch.cat((frames, frames - before), dim=2)
        return self.in_proj(self.encoder.forward_features(frames))

    def forward(self, frames: Tensor, state: VideoState | None = None) -> VideoOutput:
        """Read a chunk of the streams and run the heads on every frame.

        Args:
            frames: ``[B, F, C, S, S]`` uint8 or float in [0, 1].
            state: the state after the previous chunk (None: start of the streams).

        Returns:
            ``VideoOutput`` (features ``[B, F, N, D]``, next frames, logits, new state).
        """
        self.check_frames(frames)
        x = frames_to_float(frames)
        B, F = x.shape[:2]
        k = self.cfg.frames_per_mini_batch
        if not self.cfg.causal and k and F % k:
            raise ValueError(
                f"frames: {F} frames; non-causal TTT needs chunks of {k}-frame multiples"
            )
        last = None if state is None else state.last_frame
        h, bstate = self.backbone(self.encode(x, last), None if state is None else state.backbone)
        feats = h.view(B, F, self.tokens_per_frame, -1)
        next_frames = logits = None
        if self.decoder is not None:
            mixed = feats if self.mixer is None else self.mixer(feats)
            delta = self.decoder(mixed.flatten(1, 2))
            next_frames = x + delta if self.cfg.residual else delta
        if self.classifier is not None:
            logits = self.classifier(feats.mean(dim=2))
        done = 0 if state is None else state.frames
        return VideoOutput(feats, next_frames, logits, VideoState(bstate, x[:, -1], done + F))

    def rollout(
        self, context: Tensor, horizon: int, state: VideoState | None = None
    ) -> tuple[Tensor, VideoState]:
        """Condition on ``context`` then predict ``horizon`` frames, feeding predictions back.

        Each new frame is one call on one frame with the carried state (constant cost per frame
        for TTT backbones). Gradients flow through the rollout unless the caller disables them.

        Args:
            context: ``[B, F0, C, S, S]`` uint8 or float in [0, 1].
            horizon: ``R >= 1`` frames to predict.
            state: state before the context (None: the context starts the streams).

        Returns:
            predictions ``[B, R, C, S, S]`` (clamped to [0, 1]) and the state after the last
            fed-back frame (the final prediction itself is not fed).
        """
        self._check_rollout(horizon)
        out = self(context, state)
        return self.feed_back(out.next_frames[:, -1], horizon, out.state)

    def feed_back(
        self, first: Tensor, horizon: int, state: VideoState, detach: bool = False
    ) -> tuple[Tensor, VideoState]:
        """Roll out from a first prediction: feed each prediction back as the next frame.

        Args:
            first: ``[B, C, S, S]`` the prediction of the frame after ``state``'s last frame.
            horizon: ``R >= 1`` frames in all (``first`` included).
            state: the state after the frames ``first`` was predicted from.
            detach: cut the gradient through the fed-back frames (cheaper training).

        Returns:
            predictions ``[B, R, C, S, S]`` clamped to [0, 1], and the final state.
        """
        self._check_rollout(horizon)
        preds = [first.clamp(0, 1)]
        for _ in range(horizon - 1):
            fed = preds[-1].detach() if detach else preds[-1]
            out = self(fed[:, None], state)
            state = out.state
            preds.append(out.next_frames[:, -1].clamp(0, 1))
        return torch.stack(preds, dim=1), state

    def _check_rollout(self, horizon: int) -> None:
        if self.decoder is None:
            raise ValueError("decoder: this model has no prediction head (decoder='none')")
        if horizon < 1:
            raise ValueError(f"horizon: expected >= 1, got {horizon}")
        if not self.cfg.causal and self.cfg.frames_per_mini_batch > 1:
            raise ValueError(
                "frames_per_mini_batch: a frame-by-frame rollout needs 1 when causal=False"
            )

    def num_parameters(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def saved_config(self) -> VideoConfig:
        """``self.cfg`` without ``timm_weights``: the saved tensors hold the encoder's weights,
        so the folder does not depend on a file of this machine."""
        return replace(self.cfg, timm_weights=None)


def rollout_stream(
    model: VideoModel, context: Tensor, horizon: int, chunk: int = 1
) -> tuple[Tensor, VideoState]:
    """``VideoModel.rollout`` with the context fed ``chunk`` frames at a time (streaming).

    Args:
        context: ``[B, F0, C, S, S]``.

    Returns:
        predictions ``[B, R, C, S, S]`` and the final state (equal to ``model.rollout``).
    """
    state, F0 = None, context.shape[1]
    for start in range(0, F0 - 1, chunk):
        state = model(context[:, start : min(start + chunk, F0 - 1)], state).state
    return model.rollout(context[:, -1:], horizon, state)
