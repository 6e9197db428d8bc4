"""Regard <-> Hugging Face Marian (``MarianMTModel``, the OPUS-MT family): config, weights, vocabulary.

The two are the same network: post-LN encoder-decoder, separate q/k/v/out projections with biases,
embeddings scaled by sqrt(d_model), sinusoidal positions. Three differences are mapped here:

* Marian's position table puts every sine in the first half of the hidden dimensions and every
  cosine in the second; Regard interleaves them (sin at 2i, cos at 2i+1). The networks are equal up
  to that fixed permutation of the hidden dimensions, applied to every weight that reads the residual
  stream (its columns), writes it (its rows) or normalises it (its vector).
* Marian adds ``final_logits_bias`` to the logits: Regard's optional ``output_bias``.
* OPUS-MT starts decoding from pad (``decoder_start_token_id``), has eos 0 and pad last; Regard's
  ``bos_id`` is the decoder start, so a config with ``bos_id == pad_id`` says exactly that.

``transformers`` is an optional dependency: it is imported only when a Marian model is read or written.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import sentencepiece as spm
import torch

from .checkpoint import Checkpoint, CheckpointError, inference_layout
from .config import ModelConfig
from .tokenizer import APOSTROPHES, ELIDED_WORDS, SPACES_PATTERN, join_elision, prepare_split_french
from .transformer import Transformer

# Regard activation <-> Hugging Face ACT2FN name ("swish" and "silu" are the same function there).
_TO_HF_ACTIVATION = {"relu": "relu", "gelu": "gelu", "silu": "swish"}
_FROM_HF_ACTIVATION = {"relu": "relu", "gelu": "gelu", "swish": "silu", "silu": "silu"}

# How a tensor touches the hidden dimensions: "in" = its columns read them (linear weights, embeddings),
# "out" = its rows write them (linear weights and biases), "vec" = a LayerNorm vector, None = untouched.
_ATTN = [("q_proj", "in", None), ("k_proj", "in", None), ("v_proj", "in", None), ("out_proj", "out", "out")]
_FFN = [("ffn.linear1", "fc1", "in", None), ("ffn.linear2", "fc2", "out", "out")]


def is_marian_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory holding a Hugging Face ``config.json`` with model_type marian."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "marian"
    except (OSError, ValueError):
        return False


def require_transformers():
    """The ``transformers`` module, or an error that says how to get it."""
    try:
        import transformers
    except ImportError as exc:
        raise CheckpointError(
            "reading or writing a Hugging Face Marian model needs the optional `transformers` package "
            "(pip install -r requirements-dev.txt)"
        ) from exc
    return transformers


# --- the hidden-dimension permutation ----------------------------------------------------------------
def marian_order(d_model: int) -> torch.Tensor:
    """(D,) long: Marian hidden dim j holds Regard hidden dim ``order[j]`` (the sines, then the cosines)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def _permute(t: torch.Tensor, kind: str | None, order: torch.Tensor) -> torch.Tensor:
    if kind == "in":
        return t[:, order].contiguous()  # (out, D) or (V, D): reorder what is read
    if kind in ("out", "vec"):
        return t[order].contiguous()  # (D, in) or (D,): reorder what is written
    return t.clone()


def _layer_table(config: ModelConfig) -> list[tuple[str, str, str | None]]:
    """(regard name, hf name, kind) for every per-layer tensor of a post-LN model."""
    rows = []

    def attn(regard: str, hf: str) -> None:
        for proj, w_kind, b_kind in _ATTN:
            rows.append((f"{regard}.{proj}.weight", f"{hf}.{proj}.weight", w_kind))
            rows.append((f"{regard}.{proj}.bias", f"{hf}.{proj}.bias", b_kind))

    def norm(regard: str, hf: str) -> None:
        rows.extend([(f"{regard}.weight", f"{hf}.weight", "vec"), (f"{regard}.bias", f"{hf}.bias", "vec")])

    def ffn(regard: str, hf: str) -> None:
        for ours, theirs, w_kind, b_kind in _FFN:
            rows.append((f"{regard}.{ours}.weight", f"{hf}.{theirs}.weight", w_kind))
            rows.append((f"{regard}.{ours}.bias", f"{hf}.{theirs}.bias", b_kind))

    for i in range(config.n_encoder_layers):
        r, h = f"encoder_layers.{i}", f"model.encoder.layers.{i}"
        attn(f"{r}.self_attn", f"{h}.self_attn")
        norm(f"{r}.attn_block.norm", f"{h}.self_attn_layer_norm")
        ffn(r, h)
        norm(f"{r}.ffn_block.norm", f"{h}.final_layer_norm")
    for i in range(config.n_decoder_layers):
        r, h = f"decoder_layers.{i}", f"model.decoder.layers.{i}"
        attn(f"{r}.self_attn", f"{h}.self_attn")
        norm(f"{r}.self_block.norm", f"{h}.self_attn_layer_norm")
        attn(f"{r}.cross_attn", f"{h}.encoder_attn")
        norm(f"{r}.cross_block.norm", f"{h}.encoder_attn_layer_norm")
        ffn(r, h)
        norm(f"{r}.ffn_block.norm", f"{h}.final_layer_norm")
    return rows


# --- Regard -> Marian ----------------------------------------------------------------------------------
def marian_config_kwargs(config: ModelConfig, pre_ln_for_ct2: bool = False) -> dict:
    """``MarianConfig`` arguments describing a Regard model (post-LN only: HF Marian has no pre-LN).

    ``pre_ln_for_ct2`` lets a pre-LN model through for ``to_hf_model``'s CTranslate2-only variant.
    """
    if config.norm != "post" and not pre_ln_for_ct2:
        raise ValueError("Hugging Face Marian is post-LN only; a pre-LN Regard model cannot be exported to it "
                         "(export it to CTranslate2, or export a post-LN one: the Hugging Face export's "
                         "default is the shipped post-LN model)")
    return dict(
        vocab_size=config.src_vocab_size,
        decoder_vocab_size=config.tgt_vocab_size,
        share_encoder_decoder_embeddings=config.tie_embeddings,
        tie_word_embeddings=config.tie_embeddings,
        d_model=config.d_model,
        encoder_layers=config.n_encoder_layers,
        decoder_layers=config.n_decoder_layers,
        encoder_attention_heads=config.n_heads,
        decoder_attention_heads=config.n_heads,
        encoder_ffn_dim=config.d_ff,
        decoder_ffn_dim=config.d_ff,
        activation_function=_TO_HF_ACTIVATION[config.activation],
        max_position_embeddings=config.max_positions,
        scale_embedding=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=config.pad_id,
        eos_token_id=config.eos_id,
        bos_token_id=config.bos_id,
        decoder_start_token_id=config.bos_id,
        forced_eos_token_id=None,  # Regard stops at its length cap without forcing eos
    )


def regard_to_marian_state(model: Transformer, pre_ln_for_ct2: bool = False) -> dict[str, torch.Tensor]:
    """Regard weights under ``MarianMTModel`` state-dict names, hidden dims in Marian's order (fp32, CPU).

    A pre-LN model (``pre_ln_for_ct2``) adds its final norms as ``model.{encoder,decoder}.layer_norm``:
    names HF Marian does not have but CTranslate2's pre-norm spec reads.
    """
    config = model.config
    marian_config_kwargs(config, pre_ln_for_ct2)  # raises for what Marian cannot represent
    ours = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    order = marian_order(config.d_model)
    state = {hf: _permute(ours[regard], kind, order) for regard, hf, kind in _layer_table(config)}
    if config.norm == "pre":
        for side in ("encoder", "decoder"):
            for p in ("weight", "bias"):
                state[f"model.{side}.layer_norm.{p}"] = _permute(ours[f"{side}_norm.{p}"], "vec", order)  # (D,)
    src = _permute(model.src_embedding().weight.detach().float().cpu(), "in", order)  # (Vs, D)
    tgt = _permute(model.tgt_embedding().weight.detach().float().cpu(), "in", order)  # (Vt, D)
    out = _permute(model.output_weight().detach().float().cpu(), "in", order)  # (Vt, D)
    if config.tie_embeddings:
        state["model.shared.weight"] = src
    state["model.encoder.embed_tokens.weight"] = src
    state["model.decoder.embed_tokens.weight"] = tgt
    state["lm_head.weight"] = out
    bias = model.output_bias if model.output_bias is not None else torch.zeros(config.tgt_vocab_size)
    state["final_logits_bias"] = bias.detach().float().cpu().reshape(1, -1).clone()  # (1, Vt)
    return state


def to_hf_model(model: Transformer, pre_ln_for_ct2: bool = False):
    """A ``transformers.MarianMTModel`` computing the same function as ``model`` (eval mode, fp32).

    With ``pre_ln_for_ct2`` a pre-LN model becomes a Marian model that carries its final norms as
    extra ``layer_norm`` modules and ``config.normalize_before = True``: Hugging Face ignores both (so
    the model is only an intermediate, never saved), CTranslate2's converter reads both.
    """
    transformers = require_transformers()
    config = model.config
    hf_config = transformers.MarianConfig(**marian_config_kwargs(config, pre_ln_for_ct2))
    hf = transformers.MarianMTModel(hf_config)
    if config.norm == "pre":
        hf.config.normalize_before = True
        hf.model.encoder.layer_norm = torch.nn.LayerNorm(config.d_model)
        hf.model.decoder.layer_norm = torch.nn.LayerNorm(config.d_model)
    missing, unexpected = hf.load_state_dict(regard_to_marian_state(model, pre_ln_for_ct2), strict=False)
    # Only the position tables (computed, not stored) may be left out.
    missing = [k for k in missing if not k.endswith("embed_positions.weight")]
    if missing or unexpected:
        raise RuntimeError(f"Marian weight mapping is incomplete: missing {missing}, unexpected {unexpected}")
    gen = hf.generation_config
    gen.decoder_start_token_id, gen.bos_token_id = config.bos_id, config.bos_id
    gen.eos_token_id, gen.pad_token_id, gen.forced_eos_token_id = config.eos_id, config.pad_id, None
    gen.suppress_tokens = sorted({config.pad_id, config.bos_id})  # never a next token, as in Regard's search
    # Regard caps a translation at 1.5 x source + 10 tokens (model.decoding.default_max_len), a rule a
    # generation config cannot state; the position table's limit is the faithful fixed cap. A max_length
    # as well would make every generate() call warn that both are set.
    gen.num_beams, gen.do_sample, gen.max_new_tokens = 1, False, config.max_positions - 1
    gen.max_length = None
    return hf.eval()


def write_marian_tokenizer(tokenizer, out_dir: str | Path) -> None:
    """source.spm = target.spm = Regard's SentencePiece model; vocab.json maps each piece to Regard's id.

    These are the files ``MarianTokenizer`` reads. It does not know Regard's own text preparation
    (the French elision split), so ``tokenizer_config.json`` names the fast tokenizer of
    :func:`write_fast_tokenizer` for ``AutoTokenizer``; ``regard_split_elision`` tells Regard's own
    importer (``MarianVocab``) to redo the split.
    """
    out_dir = Path(out_dir)
    for name in ("source.spm", "target.spm"):
        (out_dir / name).write_bytes(tokenizer.model_proto)
    vocab = {tokenizer.sp.id_to_piece(i): i for i in range(tokenizer.vocab_size)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")
    tok_config = {"tokenizer_class": "MarianTokenizer", "source_lang": "fr", "target_lang": "en",
                  "unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>", "model_max_length": 512,
                  "separate_vocabs": False, "regard_split_elision": bool(getattr(tokenizer, "split_elision", False))}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1), encoding="utf-8")


# --- Regard's tokenizer as a Hugging Face fast tokenizer (tokenizer.json) ------------------------------
def _proto_fields(data: bytes) -> dict[int, list]:
    """Protocol-buffer wire format -> {field number: [values]} (varints as int, length-delimited as bytes).

    Enough to read a SentencePiece ModelProto's specs without the ``protobuf`` package.
    """
    fields: dict[int, list] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        value = shift = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            n = varint()
            value, i = data[i : i + n], i + n
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protocol-buffer wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def sentencepiece_spec(model_proto: bytes) -> dict:
    """The SentencePiece options that decide how text becomes pieces (from the ModelProto bytes)."""
    model = _proto_fields(model_proto)
    trainer = _proto_fields(model.get(2, [b""])[0])  # TrainerSpec
    norm = _proto_fields(model.get(3, [b""])[0])  # NormalizerSpec
    flag = lambda fields, n, default: bool(fields[n][-1]) if n in fields else default  # noqa: E731
    return {
        "model_type": {1: "unigram", 2: "bpe", 3: "word", 4: "char"}[trainer.get(3, [1])[-1]],
        "byte_fallback": flag(trainer, 35, False),
        "split_digits": flag(trainer, 25, False),
        "treat_whitespace_as_suffix": flag(trainer, 24, False),
        "normalizer": norm.get(1, [b""])[-1].decode(),
        "precompiled_charsmap": norm.get(2, [b""])[-1],
        "add_dummy_prefix": flag(norm, 3, True),
        "remove_extra_whitespaces": flag(norm, 4, True),
        "escape_whitespaces": flag(norm, 5, True),
    }


# Python's ``re`` classes in Oniguruma (the regex engine of ``tokenizers``), whose \w and \b differ:
# Python's \w is letters, numbers and "_" (no combining marks); its [^\W\d_] is letters and non-decimal
# numbers. Oniguruma's case folding also misses the Turkish dotted/dotless i that Python folds to "i".
_WORD_CHAR = r"[\p{L}\p{N}_]"
_LETTER = r"[\p{L}\p{Nl}\p{No}]"


def _elided_oniguruma() -> str:
    words = "|".join(w.replace("i", "[iİı]") for w in ELIDED_WORDS)
    return f"(?i:{words})"


def elision_split_oniguruma(apostrophe: str) -> str:
    """Matches an ``apostrophe`` that :func:`model.tokenizer.split_elision_text` follows with a space."""
    w = _elided_oniguruma()
    not_word = _WORD_CHAR.replace("[", "[^", 1)
    return rf"(?<=\A{w}|{not_word}{w}){apostrophe}(?={_LETTER})"


def elision_join_oniguruma() -> str:
    """Matches the space that :func:`model.tokenizer.join_elision` takes out."""
    w, a = _elided_oniguruma(), f"[{APOSTROPHES}]"
    not_word = _WORD_CHAR.replace("[", "[^", 1)
    return rf"(?<=\A{w}{a}|{not_word}{w}{a}) (?={_LETTER})"


def fast_tokenizer(tokenizer):
    """A ``tokenizers.Tokenizer`` that gives Regard's source ids from raw text and Regard's text back.

    Its ids are ``model.decoding.source_ids``: ``Tokenizer.encode(text.strip())`` and eos. Encoding
    strips the text as Python does, redoes ``Tokenizer._prepare`` as normalizers (Unicode spaces made
    plain, "l'animal" -> "l' animal"), then SentencePiece's own normalisation (its precompiled character
    map, if any, then leading/trailing/repeated spaces removed), the "▁" word marker and the unigram
    model with SentencePiece's scores. Control, unknown and byte pieces are never matched in text by
    SentencePiece, so they get a score no segmentation picks. Decoding undoes the split.
    Raises ValueError for SentencePiece options it does not reproduce (BPE, split digits, ...).
    """
    from tokenizers import AddedToken, Regex, Tokenizer as HFTokenizer, decoders, models, normalizers, \
        pre_tokenizers, processors

    spec = sentencepiece_spec(tokenizer.model_proto)
    unsupported = [k for k in ("split_digits", "treat_whitespace_as_suffix") if spec[k]] + \
        ([] if spec["model_type"] == "unigram" else [f"model_type={spec['model_type']}"]) + \
        ([] if spec["escape_whitespaces"] else ["escape_whitespaces=false"])
    if unsupported:
        raise ValueError(f"cannot write a fast tokenizer for a SentencePiece model with {', '.join(unsupported)}")
    sp = tokenizer.sp
    never = -1e10  # SentencePiece leaves these pieces out of its matching trie
    vocab = [(sp.id_to_piece(i), never if (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)) else sp.get_score(i))
             for i in range(sp.get_piece_size())]
    tok = HFTokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=spec["byte_fallback"]))

    # Regard strips the text it translates (``source_ids``: Python's str.strip, every Unicode space).
    py_spaces = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())  # none above U+3000
    steps = [normalizers.Replace(Regex(f"\\A[{py_spaces}]+|[{py_spaces}]+\\z"), "")]
    split = bool(getattr(tokenizer, "split_elision", False))
    if split:
        spaces = SPACES_PATTERN.encode("ascii").decode("unicode_escape")  # the class with its characters
        steps.append(normalizers.Replace(Regex(spaces), " "))
        steps += [normalizers.Replace(Regex(elision_split_oniguruma(a)), a + " ") for a in APOSTROPHES]
    if spec["precompiled_charsmap"]:
        steps.append(normalizers.Precompiled(spec["precompiled_charsmap"]))
    if spec["remove_extra_whitespaces"]:  # SentencePiece means the plain space only (after its map)
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    prepend = "always" if spec["add_dummy_prefix"] else "never"
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend, split=False)
    # The unigram model of ``tokenizers`` prices an unknown character below every piece, even the
    # "never" ones, so typed "<0x41>" would become that byte piece ("<" being unknown). Characters that
    # no ordinary piece contains are therefore kept from ever meeting a "never" piece (one made of known
    # characters only always loses to them): with byte fallback each is a unit of its own (it becomes
    # its bytes either way); without, a run of them becomes one placeholder character, which is one
    # <unk> as SentencePiece fuses such a run into one <unk>.
    known = {c for piece, score in vocab if score != never for c in piece} | {" "}
    unknown = "[^" + "".join("\\" + c if c.isascii() and not c.isalnum() else c for c in sorted(known)) + "]"
    if spec["byte_fallback"]:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [metaspace, pre_tokenizers.Split(Regex(unknown), behavior="isolated")])
    else:
        placeholder = next(chr(c) for c in range(0xF0000, 0xFFFFE) if chr(c) not in known)  # private use
        tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(Regex(unknown + "+"), placeholder)])
        tok.pre_tokenizer = metaspace

    # SentencePiece writes <unk> as " ⁇ " and drops the dummy-prefix space of the first piece only
    # (the Metaspace decoder's rule; a Strip after Fuse would also eat a space that <unk> wrote).
    back = [decoders.Replace(sp.id_to_piece(sp.unk_id()), " \u2047 "), decoders.ByteFallback(),
            decoders.Metaspace(replacement="▁", prepend_scheme=prepend, split=False), decoders.Fuse()]
    if split:
        back.append(decoders.Replace(Regex(elision_join_oniguruma()), ""))
    tok.decoder = decoders.Sequence(back)

    # <unk> is no special token: Regard's decode keeps it (as " ⁇ "), skip_special_tokens would drop it.
    specials = [(sp.id_to_piece(i), i) for i in (sp.pad_id(), sp.bos_id(), sp.eos_id()) if i >= 0]
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p, _ in specials])
    eos = sp.id_to_piece(sp.eos_id())
    tok.post_processor = processors.TemplateProcessing(single=f"$A:0 {eos}:0", pair=f"$A:0 $B:1 {eos}:1",
                                                       special_tokens=[(eos, sp.eos_id())])
    return tok


def write_fast_tokenizer(tokenizer, out_dir: str | Path, model_max_length: int) -> None:
    """tokenizer.json + special_tokens_map.json; tokenizer_config.json names the fast tokenizer for AutoTokenizer.

    ``MarianTokenizer.from_pretrained(out_dir)`` still works (it reads source.spm and vocab.json), but it
    cannot redo Regard's elision split: ``AutoTokenizer`` is the one that gives Regard's ids.
    """
    out_dir = Path(out_dir)
    fast_tokenizer(tokenizer).save(str(out_dir / "tokenizer.json"))
    sp = tokenizer.sp
    # No unk_token: transformers counts it as special and skip_special_tokens would drop the " ⁇ " that
    # Regard's decode writes for it (MarianTokenizer and MarianVocab default to "<unk>" anyway).
    names = {"pad_token": sp.id_to_piece(sp.pad_id()), "eos_token": sp.id_to_piece(sp.eos_id())}
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config.pop("unk_token", None)
    config.update(names)
    config.update({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        # Regard's decoding is exactly the tokenizer's decoder: no "clean-up" of spaces before punctuation.
        "clean_up_tokenization_spaces": False,
        # "</s>" typed in the text is text to Regard (SentencePiece never matches control pieces).
        "split_special_tokens": True,
        "padding_side": "right",
    })
    config_path.write_text(json.dumps(config, indent=1, ensure_ascii=False), encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(names, indent=1, ensure_ascii=False),
                                                     encoding="utf-8")


# --- Marian -> Regard ----------------------------------------------------------------------------------
def regard_config_from_marian(hf_config, state: dict[str, torch.Tensor], unk_id: int) -> ModelConfig:
    """The ``ModelConfig`` of a Marian model; ``state`` decides tying and the output bias by value."""
    c = hf_config
    if c.encoder_attention_heads != c.decoder_attention_heads or c.encoder_ffn_dim != c.decoder_ffn_dim:
        raise CheckpointError("Regard needs the same heads and feed-forward width in encoder and decoder")
    if getattr(c, "normalize_before", False) or getattr(c, "normalize_embedding", False):
        raise CheckpointError("only post-LN Marian models without an embedding LayerNorm are supported")
    activation = _FROM_HF_ACTIVATION.get(c.activation_function)
    if activation is None:
        raise CheckpointError(f"activation {c.activation_function!r} is not supported (relu, gelu, swish)")
    src, tgt = state["model.encoder.embed_tokens.weight"], state["model.decoder.embed_tokens.weight"]
    tied = bool(c.scale_embedding) and src.shape == tgt.shape and torch.equal(src, tgt) \
        and torch.equal(tgt, state["lm_head.weight"])
    return ModelConfig(
        src_vocab_size=src.size(0),
        tgt_vocab_size=tgt.size(0),
        d_model=c.d_model,
        n_heads=c.encoder_attention_heads,
        n_encoder_layers=c.encoder_layers,
        n_decoder_layers=c.decoder_layers,
        d_ff=c.encoder_ffn_dim,
        dropout=0.0,
        attention_dropout=0.0,
        max_positions=c.max_position_embeddings,
        norm="post",
        activation=activation,
        tie_embeddings=tied,
        output_bias=bool(state["final_logits_bias"].any()),
        pad_id=c.pad_token_id,
        unk_id=unk_id,
        bos_id=c.decoder_start_token_id,
        eos_id=_eos_id(c),
    )


def _eos_id(hf_config) -> int:
    eos = hf_config.eos_token_id
    return eos if isinstance(eos, int) else eos[0]  # a list when generation may stop on several


def marian_to_regard_state(config: ModelConfig, state: dict[str, torch.Tensor], scale_embedding: bool) -> dict:
    """``MarianMTModel`` state dict -> Regard state dict for ``config`` (hidden dims back in Regard's order)."""
    inverse = torch.argsort(marian_order(config.d_model))
    ours = {regard: _permute(state[hf].float(), kind, inverse) for regard, hf, kind in _layer_table(config)}
    # Regard always scales embeddings by sqrt(d); a model that does not is given pre-divided embeddings.
    scale = 1.0 if scale_embedding else 1.0 / math.sqrt(config.d_model)
    src = _permute(state["model.encoder.embed_tokens.weight"].float(), "in", inverse)  # (Vs, D)
    if config.tie_embeddings:
        ours["embed.weight"] = src
    else:
        ours["src_embed.weight"] = src * scale
        ours["tgt_embed.weight"] = _permute(state["model.decoder.embed_tokens.weight"].float(), "in", inverse) * scale
        ours["lm_head.weight"] = _permute(state["lm_head.weight"].float(), "in", inverse)
    if config.output_bias:
        ours["output_bias"] = state["final_logits_bias"].float().reshape(-1).clone()  # (Vt,)
    return ours


class MarianVocab:
    """Regard's tokenizer interface over an OPUS-MT vocabulary: source.spm encodes, target.spm decodes.

    SentencePiece splits text into pieces; ``vocab.json`` (and ``target_vocab.json`` when the two sides
    are separate) gives the model's id of each piece, as ``transformers.MarianTokenizer`` does.
    """

    def __init__(self, directory: str | Path, pad_id: int, eos_id: int, start_id: int) -> None:
        d = Path(directory)
        options = json.loads((d / "tokenizer_config.json").read_text()) if (d / "tokenizer_config.json").is_file() else {}
        self.source = spm.SentencePieceProcessor(model_file=str(d / "source.spm"))
        self.target = spm.SentencePieceProcessor(model_file=str(d / "target.spm"))
        self.src_vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        separate = options.get("separate_vocabs", False) and (d / "target_vocab.json").is_file()
        tgt_vocab = json.loads((d / "target_vocab.json").read_text(encoding="utf-8")) if separate else self.src_vocab
        self.id_to_piece = {i: p for p, i in tgt_vocab.items()}
        self.unk_id = self.src_vocab[options.get("unk_token", "<unk>")]
        self.pad_id, self.eos_id, self.start_id = pad_id, eos_id, start_id
        self.options: dict = {}
        # A Regard export says whether its model reads French with elisions split (``Tokenizer._prepare``).
        self.split_elision = bool(options.get("regard_split_elision", False))

    @property
    def vocab_size(self) -> int:
        return max(self.id_to_piece) + 1

    def encode_pieces(self, text: str) -> list[str]:
        # Multilingual OPUS-MT models take the target language as a leading ">>fra<<" token.
        code, end = [], text.find("<<")
        if text.startswith(">>") and end != -1:
            code, text = [text[: end + 2]], text[end + 2 :]
        if self.split_elision:
            text = prepare_split_french(text)
        return code + self.source.encode(text, out_type=str)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without eos; pieces missing from the vocabulary become <unk>."""
        return [self.src_vocab.get(p, self.unk_id) for p in self.encode_pieces(text)]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        special = (self.pad_id, self.eos_id, self.start_id)
        pieces = [self.id_to_piece[i] for i in ids if i not in special and i in self.id_to_piece]
        text = self.target.decode_pieces(pieces)
        return join_elision(text) if self.split_elision else text

    def unknown_share(self, ids: list[int]) -> float:
        """Share of ``ids`` that are <unk> (OPUS-MT vocabularies have no byte pieces)."""
        return sum(i == self.unk_id for i in ids) / len(ids) if ids else 0.0

    def piece(self, token_id: int) -> str:
        if token_id == self.start_id:
            return "<s>"  # OPUS-MT starts from <pad>; the app labels the decoder start <s> for every model
        return self.id_to_piece.get(token_id, "<unk>")

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.piece(i) for i in ids]


def load_marian_dir(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Checkpoint:
    """A Hugging Face Marian directory (e.g. a downloaded ``Helsinki-NLP/opus-mt-fr-en``) as a Checkpoint."""
    path = Path(path)
    transformers = require_transformers()
    try:
        hf = transformers.MarianMTModel.from_pretrained(str(path), dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot read the Marian model ({exc})") from exc
    c = hf.config
    try:
        tokenizer = MarianVocab(path, c.pad_token_id, _eos_id(c), c.decoder_start_token_id)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot read the Marian vocabulary files ({exc})") from exc
    state = hf.state_dict()
    try:
        config = regard_config_from_marian(c, state, tokenizer.unk_id)
    except ValueError as exc:  # ConfigError: a shape Regard's ModelConfig refuses
        raise CheckpointError(f"{path}: {exc}") from exc
    model = Transformer(config)
    model.load_state_dict(marian_to_regard_state(config, state, bool(hf.config.scale_embedding)))
    model.to(device=device, dtype=dtype).eval()
    training = {"note": f"imported from the Hugging Face Marian model at {path}"}
    return Checkpoint(model=inference_layout(model), tokenizer=tokenizer, training=training, path=path)
