"""Layer stacks and models on ``attn.layers``, re-exported by ``attn.torch`` (docs/layers.md).

- ``TransformerEncoder`` / ``TransformerDecoder``: ``num_layers`` layers of one configuration
  (``layers.<i>.*``) and a final LayerNorm ``norm`` (by default when the layers are pre-norm);
- ``TransformerModel``: token + learned position embeddings, encoder, decoder, output projection
  (an encoder-decoder; ``generate`` decodes greedily with the cross-attention K/V projected once
  per sequence and a KV cache, or linear attention's (S, z) state, for the self-attention);
- ``RegressionTransformer``: features ``[B, S, F]`` -> input projection + positions, encoder,
  mean pooling over the valid positions or a learned CLS token, linear head.

Every stack and model takes the layers' options (``attention_type``, ``num_groups``, ``dropout``,
``norm_first``, ``checkpoint``, ...) as keywords and passes them to each layer.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .layers import (TransformerDecoderLayer, TransformerEncoderLayer, check_input, check_positive,
                     check_probability)

__all__ = ["TransformerEncoder", "TransformerDecoder", "TransformerModel", "RegressionTransformer"]


def _final_norm(final_norm: Optional[bool], layer_kw: dict, embed_dim: int, factory: dict):
    if final_norm is None:
        final_norm = layer_kw.get("norm_first", True)
    return nn.LayerNorm(embed_dim, eps=layer_kw.get("norm_eps", 1e-5), **factory) if final_norm else None


def _padding_mask(padding_mask: Optional[Tensor], b: int, s: int, name: str) -> Optional[Tensor]:
    """[B, S] bool, True = a real token -> the attention modules' key padding [B, 1, 1, S]."""
    if padding_mask is None:
        return None
    if not isinstance(padding_mask, Tensor) or padding_mask.dtype != torch.bool:
        what = padding_mask.dtype if isinstance(padding_mask, Tensor) else type(padding_mask).__name__
        raise TypeError(f"{name}: is {what}, expected a bool tensor [B, S] (True = a real token, False = padding)")
    if tuple(padding_mask.shape) != (b, s):
        raise ValueError(f"{name}: has shape {list(padding_mask.shape)}, expected [B, S] = {[b, s]} (True = a real "
                         "token)")
    return padding_mask[:, None, None, :]


class TransformerEncoder(nn.Module):
    """``num_layers`` ``TransformerEncoderLayer(embed_dim, num_heads, **layer_kw)`` and a final
    norm (``final_norm=None``: when the layers are pre-norm). ``forward(x [B, S, E], mask=None)``."""

    def __init__(self, num_layers: int, embed_dim: int, num_heads: int, final_norm: Optional[bool] = None, *,
                 device=None, dtype=None, **layer_kw):
        super().__init__()
        check_positive("num_layers", num_layers, "encoder layers")
        factory = {"device": device, "dtype": dtype}
        self.layers = nn.ModuleList(TransformerEncoderLayer(embed_dim, num_heads, **factory, **layer_kw)
                                    for _ in range(num_layers))
        self.norm = _final_norm(final_norm, layer_kw, embed_dim, factory)
        self.embed_dim = embed_dim

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask=mask)
        return x if self.norm is None else self.norm(x)


class TransformerDecoder(nn.Module):
    """``num_layers`` ``TransformerDecoderLayer(embed_dim, num_heads, **layer_kw)`` and a final
    norm. ``forward(x [B, T, E], memory [B, S, E], mask=None, memory_mask=None)``; each layer
    projects the memory's K/V once per call (``project_memory``)."""

    def __init__(self, num_layers: int, embed_dim: int, num_heads: int, final_norm: Optional[bool] = None, *,
                 device=None, dtype=None, **layer_kw):
        super().__init__()
        check_positive("num_layers", num_layers, "decoder layers")
        factory = {"device": device, "dtype": dtype}
        self.layers = nn.ModuleList(TransformerDecoderLayer(embed_dim, num_heads, **factory, **layer_kw)
                                    for _ in range(num_layers))
        self.norm = _final_norm(final_norm, layer_kw, embed_dim, factory)
        self.embed_dim = embed_dim

    def project_memory(self, memory: Tensor):
        """Every layer's cross-attention K/V of memory, projected once (a list, one per layer)."""
        return [layer.project_memory(memory) for layer in self.layers]

    def forward(self, x: Tensor, memory: Optional[Tensor] = None, mask: Optional[Tensor] = None,
                memory_mask: Optional[Tensor] = None, memory_kv=None) -> Tensor:
        if (memory is None) == (memory_kv is None):
            raise ValueError("memory, memory_kv: " + ("both given" if memory is not None else "neither given") +
                             ", expected exactly one (the encoder states [B, S, E], or project_memory(memory))")
        for i, layer in enumerate(self.layers):
            if memory is not None:
                x = layer(x, memory, mask=mask, memory_mask=memory_mask)
            else:
                x = layer(x, mask=mask, memory_mask=memory_mask, memory_kv=memory_kv[i])
        return x if self.norm is None else self.norm(x)

    def make_caches(self, capacity: int):
        return [layer.make_cache(capacity) for layer in self.layers]

    @torch.no_grad()
    def step(self, x_t: Tensor, memory_kv, caches, memory_mask: Optional[Tensor] = None) -> Tensor:
        for layer, kv, cache in zip(self.layers, memory_kv, caches):
            x_t = layer.step(x_t, kv, cache, memory_mask=memory_mask)
        return x_t if self.norm is None else self.norm(x_t)


class TransformerModel(nn.Module):
    """An encoder-decoder on token ids: ``forward(src [B, S], tgt [B, T], src_padding_mask=None)``
    -> logits ``[B, T, tgt_vocab_size]`` (causal over tgt; ``src_padding_mask`` ``[B, S]`` bool,
    True = a real token). Embeddings: token + learned position (``max_len``), dropout.

    ``TransformerModel(src_vocab_size, tgt_vocab_size=None, embed_dim=256, num_heads=8,
    num_encoder_layers=2, num_decoder_layers=2, max_len=512, **layer_kw)``; ``layer_kw`` go to every
    layer (``attention_type``, ``num_groups``, ``ffn_dim``, ``dropout``, ``norm_first``,
    ``checkpoint``, ``window_size`` ...; the decoder's ``cross_attention_type``)."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: Optional[int] = None, embed_dim: int = 256,
                 num_heads: int = 8, num_encoder_layers: int = 2, num_decoder_layers: int = 2, max_len: int = 512,
                 *, device=None, dtype=None, cross_attention_type: Optional[str] = None, **layer_kw):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        check_positive("src_vocab_size", src_vocab_size, "source tokens")
        tgt_vocab_size = src_vocab_size if tgt_vocab_size is None else tgt_vocab_size
        check_positive("tgt_vocab_size", tgt_vocab_size, "target tokens")
        self.max_len = check_positive("max_len", max_len, "the longest sequence")
        self.dropout = check_probability("dropout", layer_kw.get("dropout", 0.0))
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, **factory)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_dim, **factory)
        self.pos_embed = nn.Embedding(max_len, embed_dim, **factory)
        enc_kw = {k: v for k, v in layer_kw.items() if k != "apply_causal_mask"}
        self.encoder = TransformerEncoder(num_encoder_layers, embed_dim, num_heads, **factory, **enc_kw)
        self.decoder = TransformerDecoder(num_decoder_layers, embed_dim, num_heads, **factory,
                                          cross_attention_type=cross_attention_type, **layer_kw)
        self.output = nn.Linear(embed_dim, tgt_vocab_size, **factory)
        self.embed_dim = embed_dim

    def _embed(self, table: nn.Embedding, ids: Tensor, start: int, name: str) -> Tensor:
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            what = f"shape {list(ids.shape)} and dtype {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"{name}: has {what}, expected token ids [B, L] of dtype int64")
        if start + ids.shape[1] > self.max_len:
            raise ValueError(f"{name}: reaches position {start + ids.shape[1]}, expected at most max_len = "
                             f"{self.max_len} positions")
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = table(ids) + self.pos_embed(pos)
        return nn.functional.dropout(x, self.dropout, self.training) if self.dropout else x

    def encode(self, src: Tensor, src_padding_mask: Optional[Tensor] = None) -> Tensor:
        mask = _padding_mask(src_padding_mask, src.shape[0], src.shape[1], "src_padding_mask")
        return self.encoder(self._embed(self.src_embed, src, 0, "src"), mask=mask)

    def forward(self, src: Tensor, tgt: Tensor, src_padding_mask: Optional[Tensor] = None) -> Tensor:
        memory = self.encode(src, src_padding_mask)
        mask = _padding_mask(src_padding_mask, src.shape[0], src.shape[1], "src_padding_mask")
        y = self.decoder(self._embed(self.tgt_embed, tgt, 0, "tgt"), memory, memory_mask=mask)
        return self.output(y)

    @torch.no_grad()
    def generate(self, src: Tensor, max_new_tokens: int, bos_id: int, src_padding_mask: Optional[Tensor] = None,
                 return_logits: bool = False):
        """Greedy decoding: ``[B, max_new_tokens]`` token ids after ``bos_id`` (and the logits
        ``[B, max_new_tokens, V]`` with ``return_logits``). The memory is encoded and projected once;
        each step runs the decoder on one token with the layers' caches."""
        check_positive("max_new_tokens", max_new_tokens, "tokens to generate")
        if max_new_tokens > self.max_len:
            raise ValueError(f"max_new_tokens: = {max_new_tokens}, expected at most max_len = {self.max_len}")
        memory = self.encode(src, src_padding_mask)
        mask = _padding_mask(src_padding_mask, src.shape[0], src.shape[1], "src_padding_mask")
        kv = self.decoder.project_memory(memory)
        caches = self.decoder.make_caches(max_new_tokens)
        tok = torch.full((src.shape[0], 1), int(bos_id), dtype=torch.int64, device=src.device)
        out, logits = [], []
        for t in range(max_new_tokens):
            y = self.decoder.step(self._embed(self.tgt_embed, tok, t, "tgt"), kv, caches, memory_mask=mask)
            step_logits = self.output(y[:, -1])
            tok = step_logits.argmax(-1, keepdim=True)
            out.append(tok)
            logits.append(step_logits)
        ids = torch.cat(out, dim=1)
        return (ids, torch.stack(logits, dim=1)) if return_logits else ids


class RegressionTransformer(nn.Module):
    """Features ``[B, S, num_features]`` -> predictions ``[B, out_dim]``: ``Linear(F, E)`` + learned
    positions, ``TransformerEncoder``, pooling, ``Linear(E, out_dim)``. ``pooling="mean"``: the mean
    over the valid positions (``padding_mask`` ``[B, S]`` bool, True = a real position; padded keys
    are also masked in the attention); ``"cls"``: a learned token prepended at position 0, its
    final state is pooled.

    ``RegressionTransformer(num_features, embed_dim=64, num_heads=4, num_layers=2, out_dim=1,
    pooling="mean", max_len=512, **layer_kw)``."""

    def __init__(self, num_features: int, embed_dim: int = 64, num_heads: int = 4, num_layers: int = 2,
                 out_dim: int = 1, pooling: str = "mean", max_len: int = 512, *, device=None, dtype=None,
                 **layer_kw):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        check_positive("num_features", num_features, "features per position")
        check_positive("out_dim", out_dim, "outputs per sequence")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling: is {pooling!r}, expected 'mean' or 'cls'")
        self.pooling, self.num_features = pooling, num_features
        self.max_len = check_positive("max_len", max_len, "the longest sequence")
        self.input_proj = nn.Linear(num_features, embed_dim, **factory)
        self.pos_embed = nn.Embedding(max_len + (pooling == "cls"), embed_dim, **factory)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim, **factory) * 0.02) if pooling == "cls" else None
        self.encoder = TransformerEncoder(num_layers, embed_dim, num_heads, **factory, **layer_kw)
        self.head = nn.Linear(embed_dim, out_dim, **factory)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        check_input(x, self.num_features, "x")
        b, s, _ = x.shape
        if s > self.max_len:
            raise ValueError(f"x: has {s} positions, expected at most max_len = {self.max_len}")
        mask = _padding_mask(padding_mask, b, s, "padding_mask")
        h = self.input_proj(x)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(b, 1, -1).to(h.dtype), h], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(b, 1, 1, 1), mask], dim=-1)
        h = h + self.pos_embed(torch.arange(h.shape[1], device=x.device)).to(h.dtype)
        h = self.encoder(h, mask=mask)
        if self.pooling == "cls":
            pooled = h[:, 0]
        elif padding_mask is None:
            pooled = h.mean(dim=1)
        else:
            w = padding_mask.to(h.dtype).unsqueeze(-1)
            pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)
