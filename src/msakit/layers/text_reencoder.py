"""Raw-text re-encoding with MiniLM: one block for every model that reads `Batch.raw_text`.

`RawTextEncoder` turns transcripts into token states (B, Lt, 384) and a mask (B, Lt)
with the packaged all-MiniLM-L6-v2 architecture. It is built from the packaged config
only (no weights are read in `__init__`); the weights come from `load_base()` (the
packaged MiniLM), from a state dict (a stage-1 folder, loaded by the owning model's
`load_pretrained`), or from a checkpoint's state dict, since the encoder's tensors are
part of the owning model's state dict.

Frozen (`trainable=False`), the states of each transcript are cached in a bounded,
per-instance LRU cache (`cache_size` transcripts), cleared whenever weights are loaded;
trainable, nothing is cached and gradients flow into the encoder.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from msakit.errors import ConfigError

HIDDEN_DIM = 384


class RawTextEncoder(nn.Module):
    """Transcripts -> MiniLM token states: raw_text (B,), present (B,) -> (B, Lt, 384), (B, Lt)."""

    def __init__(self, *, max_tokens: int = 50, trainable: bool = False, cache_size: int = 4096) -> None:
        super().__init__()
        import os

        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from msakit.text_encoder import model_dir

        os.environ["HF_HUB_OFFLINE"] = "1"  # the folder is local; nothing is fetched
        folder = model_dir()
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(folder))
        self.model: nn.Module = AutoModel.from_config(AutoConfig.from_pretrained(str(folder)))
        self.model.pooler = None  # unused: token states, not the pooled [CLS]
        self.max_tokens = max_tokens
        self.trainable = trainable
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        if not trainable:
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.model.eval()  # a frozen encoder never uses dropout, from construction on
        self.register_load_state_dict_post_hook(lambda module, _keys: module.clear_cache())

    def load_base(self) -> None:
        """The packaged all-MiniLM-L6-v2 weights (strictly offline)."""
        from msakit.text_encoder import load_minilm

        _, base = load_minilm()
        self.load_encoder_state(base.state_dict())

    def load_encoder_state(self, state: dict[str, Tensor]) -> None:
        """MiniLM weights (keys as in a transformers BertModel, pooler ignored)."""
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"text encoder weights do not fit MiniLM: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        self.clear_cache()

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True) -> RawTextEncoder:
        super().train(mode)
        if not self.trainable:
            self.model.eval()  # a frozen encoder never uses dropout
        return self

    def forward(self, raw_text: Sequence[str], present: Tensor) -> tuple[Tensor, Tensor]:
        device = present.device
        if self.trainable:
            enc = self.tokenizer(
                list(raw_text), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            ).to(device)
            states = self.model(**enc).last_hidden_state  # (B, Lt, 384)
            return states, enc["attention_mask"].bool() & present[:, None]
        todo = sorted({t for t in raw_text if t not in self._cache})
        if todo:
            enc = self.tokenizer(todo, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
            self.model.to(device)
            with torch.no_grad():
                hidden = self.model(**enc.to(device)).last_hidden_state  # (n, l, 384)
            for text, h, m in zip(todo, hidden, enc["attention_mask"].bool(), strict=True):
                self._cache[text] = h[m].cpu()
        rows = []
        for t in raw_text:
            self._cache.move_to_end(t)
            rows.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        states = nn.utils.rnn.pad_sequence(rows, batch_first=True).to(device)  # (B, Lt, 384)
        lengths = torch.tensor([len(r) for r in rows], device=device)
        mask = (torch.arange(states.shape[1], device=device)[None, :] < lengths[:, None]) & present[:, None]
        return states * mask.unsqueeze(-1), mask
