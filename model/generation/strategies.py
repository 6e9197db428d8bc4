"""What to decode: the search strategy as data, and the check of a forced prefix."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..errors import InputError
from ..transformer import Transformer


@dataclass(frozen=True)
class Greedy:
    """Take the most likely token at every step."""


@dataclass(frozen=True)
class Beam:
    """Beam search; a sentence stops once ``size`` hypotheses have ended with eos (among the top ``size``)."""

    size: int = 4
    length_penalty: float = 1.0


@dataclass(frozen=True)
class Forced:
    """Impose the target tokens ``prefix`` (ids, without <s>), then continue with ``then``."""

    prefix: tuple[int, ...]
    then: Union[Greedy, Beam] = Greedy()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", tuple(int(t) for t in self.prefix))


Strategy = Union[Greedy, Beam, Forced]


def check_prefix(model: Transformer, prefix: tuple[int, ...] | list[int], max_len: int, what: str = "forced") -> None:
    """Refuse a forced (or sent-back ``what``) prefix the model cannot continue: ``InputError`` with the reason."""
    cfg = model.config
    if len(prefix) > max_len:
        raise InputError(f"the {what} prefix has {len(prefix)} tokens; at most {max_len} tokens are decoded")
    for i, tok in enumerate(prefix):
        if not 0 <= tok < cfg.tgt_vocab_size or tok in (cfg.pad_id, cfg.bos_id):
            raise InputError(f"{what} token {tok} at position {i} is not a token the model can output")
        if tok == cfg.eos_id and i != len(prefix) - 1:
            raise InputError(f"a {what} prefix can only end with </s>, not contain it")
