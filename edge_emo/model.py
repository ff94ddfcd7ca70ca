"""The paper's network: GRU(256) -> GRU(256) over standardised feature frames, with two heads.

- `recon`: Linear(256 -> F) per frame, used only for masked-span pretraining.
- `head`:  Linear(256 -> 6), the emotion intensities.

The utterance embedding is the mean of the top GRU layer's hidden states over the clip's frames. A stream
can carry that mean as a running sum and a count, and because the head is linear, head(mean of h) equals the
mean of the per-frame head outputs: the runtime's rolling utterance estimate and offline evaluation are the
same number. Padding never leaks: the GRU is causal, so right-padding cannot change earlier frames, and the
pool only counts each clip's own frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ModelConfig:
    n_features: int
    hidden: int = 256
    layers: int = 2
    n_emotions: int = 6


class EmotionGRU(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.gru = nn.GRU(config.n_features, config.hidden, num_layers=config.layers, batch_first=True)
        self.recon = nn.Linear(config.hidden, config.n_features)
        self.head = nn.Linear(config.hidden, config.n_emotions)

    def hidden_states(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, F) standardised frames -> top-layer hidden states (B, T, H) and the final state (L, B, H)."""
        return self.gru(x, state)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame reconstruction of the (unmasked) input from a masked input, (B, T, F)."""
        return self.recon(self.hidden_states(x)[0])

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Utterance embedding (B, H): mean of hidden states over each clip's first `lengths` frames."""
        h = self.hidden_states(x)[0]
        valid = torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]
        h = h * valid[..., None]
        return h.sum(1) / lengths[:, None].clamp(min=1).to(h.dtype)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Utterance-level emotion intensities (B, 6)."""
        return self.head(self.embed(x, lengths))

    def config_dict(self) -> dict:
        return asdict(self.config)
