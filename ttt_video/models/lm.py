"""The TTT language model: embedding -> backbone -> RMSNorm -> head tied to the embedding.

Letters: ``B`` batch, ``T`` tokens in this call, ``T0`` prompt tokens, ``N`` new tokens,
``D`` model width, ``V`` vocabulary size.

``forward(input_ids, state)`` returns ``(logits, new_state)``; any ``T >= 1`` works, and
calling it chunk by chunk with the returned state equals one call on the whole stream.
``generate`` prefills the prompt, then decodes one token at a time (TTT layers take the
primal ``ttt_decode`` path; the state of a TTT model has a fixed size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ttt_video.models.backbone import Backbone, BackboneState
from ttt_video.models.config import LMConfig
from ttt_video.models.official import (
    config_from_official,
    config_to_official,
    from_official_state_dict,
    read_official_folder,
    to_official_state_dict,
)
from ttt_video.models.pretrained import Pretrained
from ttt_video.models.token_sampling import sample_next


class LanguageModel(Pretrained, nn.Module):
    """Causal language model over a token stream (see the module docstring).

    ``save_pretrained(dir)`` / ``LanguageModel.from_pretrained(dir)``: a portable folder
    (``ttt_video.models.pretrained``).
    """

    model_type = "lm"
    config_class = LMConfig

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.width)
        nn.init.normal_(self.embed.weight, mean=0.0, std=cfg.init_std)
        self.backbone = Backbone(cfg)
        self.head = None
        if not cfg.tie_embeddings:
            self.head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
            nn.init.normal_(self.head.weight, mean=0.0, std=cfg.init_std)

    def forward(
        self, input_ids: Tensor, state: BackboneState | None = None
    ) -> tuple[Tensor, BackboneState]:
        """Logits for every position of a chunk of the streams.

        Args:
            input_ids: ``[B, T]`` token ids.
            state: state after the previous chunk (None: start of the streams).

        Returns:
            ``logits: [B, T, V]`` (fp32 or wider) and the state after this chunk.
        """
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(
                f"input_ids: expected [B, T] with T >= 1, got {tuple(input_ids.shape)}"
            )
        if not input_ids.is_cuda and not torch.compiler.is_compiling():
            # on a GPU the check would wait for the device; the embedding asserts there
            low, high = map(int, torch.aminmax(input_ids))
            V = self.cfg.vocab_size
            if low < 0 or high >= V:
                raise ValueError(
                    f"input_ids: token ids must lie in [0, {V}) (model.vocab_size), got "
                    f"ids from {low} to {high}: a tokenizer with a larger vocabulary?"
                )
        h, state = self.backbone(self.embed(input_ids), state)
        weight = self.embed.weight if self.head is None else self.head.weight
        logits = nn.functional.linear(h, weight)
        return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, state

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue prompts: prefill ``input_ids: [B, T0]``, then decode token by token.

        Sampling as ``sampling.sample_next`` (``temperature=0``: greedy). A stream that has
        produced ``eos_id`` keeps producing it; decoding stops early once all streams have.

        Returns:
            ``[B, T0 + N]`` with ``N <= max_new_tokens``: the prompt and the new tokens.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens: expected >= 0, got {max_new_tokens}")
        tokens = [input_ids]
        if max_new_tokens == 0:
            return input_ids
        logits, state = self(input_ids)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for step in range(max_new_tokens):
            nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
            if eos_id is not None:
                nxt = nxt.masked_fill(done, eos_id)
                done = done | (nxt == eos_id)
            tokens.append(nxt[:, None])
            if (eos_id is not None and bool(done.all())) or step == max_new_tokens - 1:
                break
            logits, state = self(nxt[:, None], state)
        return torch.cat(tokens, dim=1)

    def num_parameters(self) -> int:
        """Trainable parameters (the tied head counted once)."""
        return sum(p.numel() for p in self.parameters())


def from_official(
    config: dict[str, Any] | str | Path, state_dict: dict[str, Tensor] | None = None
) -> LanguageModel:
    """Build our model from an official (``ttt-lm-pytorch``) checkpoint.

    Args:
        config: the official config dict, or the official model's folder (``config.json`` and
            ``model.safetensors`` or ``pytorch_model.bin``; see
            ``official.read_official_folder``).
        state_dict: the official tensors (only with a config dict).

    Raises:
        official.CheckpointMismatchError: names or shapes do not match the config, listing
            the missing, unexpected and wrongly shaped keys.
    """
    if isinstance(config, (str, Path)):
        if state_dict is not None:
            raise ValueError("state_dict: pass either a folder or a config dict and a state_dict")
        config, state_dict = read_official_folder(config)
    elif state_dict is None:
        raise ValueError("state_dict: required with a config dict")
    cfg = config_from_official(config)
    with torch.device("meta"):
        shapes = LanguageModel(cfg).state_dict()
    ours = from_official_state_dict(cfg, state_dict, shapes)
    model = LanguageModel(cfg)
    model.load_state_dict(ours)
    return model


def to_official(model: LanguageModel) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The official config dict and state_dict of ``model`` (tensors are detached copies)."""
    ours = {n: t.detach().clone() for n, t in model.state_dict().items()}
    return config_to_official(model.cfg), to_official_state_dict(model.cfg, ours)
