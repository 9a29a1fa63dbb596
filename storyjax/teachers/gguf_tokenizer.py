"""A GGUF file's tokenizer, built from the vocabulary the file carries with the `tokenizers` library: no
torch (transformers' own GGUF reader imports it), no download, the same ids llama.cpp and transformers give.

A GGUF file states its tokenizer in `tokenizer.ggml.*` fields:
- `model = "gpt2"`: byte-level BPE (Llama-3, Qwen2, SmolLM2). Tokens are spelled in GPT-2's byte
  alphabet and the merges are listed. `pre` names how text is split into words before merging; each
  family's split is a regular expression (below, as llama.cpp and the models' tokenizer.json define them).
- `model = "llama"`: SentencePiece BPE (Gemma, Llama-2). Spaces are "▁", unknown bytes fall back to
  <0xNN> tokens, and the file lists scores, not merges. The merges are rebuilt from the vocabulary: a
  token is the merge of two tokens that spell it, ranked by its score. Gemma's scores do not follow its merge
  order, so there the token's position in the file ranks it, and its tokens of several spaces are stored as
  spaces where the merges spell "▁".
Tokens typed control (3) are special tokens; user-defined ones (4) are matched whole, as llama.cpp does.
"""

from __future__ import annotations

from absl import logging

GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# tokenizer.ggml.pre -> the splits applied in turn (SmolLM's: every digit alone, then GPT-2's words)
PRE_SPLITS = {
    "gpt2": (GPT2_SPLIT,), "default": (GPT2_SPLIT,), "smollm": (r"\p{N}", GPT2_SPLIT),
    "llama-bpe": (LLAMA3_SPLIT,), "llama3": (LLAMA3_SPLIT,), "llama-v3": (LLAMA3_SPLIT,), "smaug-bpe": (LLAMA3_SPLIT,),
    "qwen2": (QWEN2_SPLIT,), "deepseek-r1-qwen": (QWEN2_SPLIT,),
}
IGNORE_MERGES = ("llama-bpe", "llama3", "llama-v3", "smaug-bpe")  # a word already in the vocabulary is one token
CONTROL, USER_DEFINED = 3, 4


def _field(meta: dict, key: str, default=None):
    return meta.get(f"tokenizer.{key}", default)


def _byte_level(tokens: list, merges: list, pre: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    model = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ", 1)) for m in merges],
                       ignore_merges=pre in IGNORE_MERGES)
    tok = Tokenizer(model)
    if pre not in PRE_SPLITS:
        logging.warning("GGUF tokenizer.ggml.pre=%r is not one storyjax knows: words are split as GPT-2 splits them "
                        "(ids may differ from llama.cpp's on digits and punctuation runs).", pre)
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_SPLITS.get(pre, (GPT2_SPLIT,))]
    tok.pre_tokenizer = pre_tokenizers.Sequence(splits + [pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                   use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def _spm_merges(tokens: list, rank: dict, types: list) -> list:
    """Merges implied by a SentencePiece vocabulary: (a, b) for every way a normal or user-defined token splits into two
    tokens, best `rank` first (ties by the pieces' ids)."""
    ids = {t: i for i, t in enumerate(tokens)}
    found = []
    for t, kind in zip(tokens, types):
        if kind not in (1, USER_DEFINED) or len(t) < 2:
            continue
        for cut in range(1, len(t)):
            a, b = t[:cut], t[cut:]
            if a in ids and b in ids:
                found.append((-rank[t], ids[a], ids[b], a, b))
    found.sort()
    return [(a, b) for _, _, _, a, b in found]


def _sentencepiece(tokens: list, scores: list, types: list, unk: str, add_space_prefix: bool, gemma: bool):
    """(tokenizer, the tokens as its vocabulary spells them)."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    if gemma:  # tokens of spaces only are stored as spaces; the merges that build them spell "▁"
        tokens = ["▁" * len(t) if t and not t.strip(" ") else t for t in tokens]
    rank = {t: -i for i, t in enumerate(tokens)} if gemma else dict(zip(tokens, scores))
    model = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=_spm_merges(tokens, rank, types),
                       unk_token=unk, fuse_unk=True, byte_fallback=True)
    tok = Tokenizer(model)
    steps = [normalizers.Prepend("▁")] if add_space_prefix else []
    tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
                                    + ([decoders.Strip(" ", 1, 0)] if add_space_prefix else []))
    return tok, tokens


def from_metadata(meta: dict, path: str):
    """The transformers tokenizer (with the file's chat template and special tokens) of a GGUF file whose
    metadata is `meta` (`gguf_file.GGUFFile.metadata`)."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast
    kind = _field(meta, "ggml.model")
    tokens = _field(meta, "ggml.tokens")
    if kind not in ("gpt2", "llama") or not tokens:
        raise ValueError(f"{path}: its tokenizer (tokenizer.ggml.model={kind!r}) is not one storyjax builds (gpt2 "
                         "byte-level BPE or llama SentencePiece); give the model as a Hugging Face folder with "
                         "tokenizer.json instead.")
    types = _field(meta, "ggml.token_type") or [1] * len(tokens)

    def special(key: str):
        index = _field(meta, f"ggml.{key}_token_id")
        return None if index is None else tokens[index]

    if kind == "gpt2":
        tok = _byte_level(tokens, _field(meta, "ggml.merges") or [], _field(meta, "ggml.pre", "default"))
        spelled = tokens
        add_bos = bool(_field(meta, "ggml.add_bos_token", False))
    else:
        tok, spelled = _sentencepiece(tokens, _field(meta, "ggml.scores") or [0.0] * len(tokens), types,
                                      special("unknown"), bool(_field(meta, "ggml.add_space_prefix", True)),
                                      meta.get("general.architecture", "").startswith("gemma"))
        add_bos = bool(_field(meta, "ggml.add_bos_token", True))  # llama.cpp's default for SentencePiece
    # as the vocabulary spells them: an added token never gets an id of its own beyond the model's vocabulary
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, k in zip(spelled, types) if k == CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, k in zip(spelled, types) if k == USER_DEFINED])
    bos = special("bos") if add_bos else None
    eos = special("eos") if _field(meta, "ggml.add_eos_token", False) else None
    if bos or eos:
        def around(text: str, seq: int) -> str:
            return " ".join(([f"{bos}:{seq}"] if bos else []) + [text] + ([f"{eos}:{seq}"] if eos else []))
        tok.post_processor = processors.TemplateProcessing(
            single=around("$A:0", 0), pair=around("$A:0", 0) + " " + around("$B:1", 1),
            special_tokens=[(t, tokens.index(t)) for t in (bos, eos) if t])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=special("bos"), eos_token=special("eos"),
                                   unk_token=special("unknown"), pad_token=special("padding"),
                                   chat_template=_field(meta, "chat_template"))
