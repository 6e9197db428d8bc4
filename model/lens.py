"""The logit lens: what each decoder layer would predict if decoding stopped there.

Each layer's output state goes through what follows the last layer: the final LayerNorm (pre-LN
models only; post-LN layers already end with a norm) and the output projection. The last layer's
row is the model's real prediction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .attention import HeadMask
from .generation import next_token_logprobs
from .transformer import EncoderOutput, Transformer


@dataclass
class LogitLens:
    top_ids: np.ndarray  # (T, L) per step and decoder layer: the token that layer would output
    top_probs: np.ndarray  # (T, L) its probability
    chosen_probs: np.ndarray  # (T, L) the probability that layer gives the token actually output at step t


@torch.inference_mode()
def logit_lens(
    model: Transformer, enc: EncoderOutput, out_ids: list[int], head_mask: HeadMask | None = None
) -> LogitLens:
    """Teacher-forced over a translation of the one sentence encoded in ``enc`` (e.g. a finished
    ``Generation.sentence()``, so nothing is encoded again): ``out_ids`` are the T generated tokens
    (eos included if it was generated); step t reads the decoder input <s> out_ids[:t]."""
    device = enc.memory.device
    tgt_in = torch.tensor([[model.config.bos_id] + list(out_ids[:-1])], device=device)  # (1, T)
    states: list[torch.Tensor] = []
    model.run_decoder(tgt_in, enc, head_mask=head_mask, states=states)
    x = torch.stack([s[0] for s in states], 1)  # (T, L, D)
    logp = next_token_logprobs(model, model.project(model.decoder_norm(x)).flatten(0, 1))  # (T*L, V)
    logp = logp.view(x.size(0), x.size(1), -1)  # (T, L, V)
    top_lp, top_ids = logp.max(-1)  # (T, L)
    chosen = logp.gather(2, torch.tensor(out_ids, device=device)[:, None, None].expand(-1, x.size(1), 1))[..., 0]
    return LogitLens(top_ids.cpu().numpy(), top_lp.exp().cpu().numpy(), chosen.exp().cpu().numpy())
