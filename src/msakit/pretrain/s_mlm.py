"""S-MLM: Sentiment-aware Masked Language Modelling, TSSP-MSA stage 1 for text (seed paper §3.1 A, Algorithm 1).

The packaged all-MiniLM-L6-v2 encoder (loaded offline by `msakit.text_encoder.load_minilm`)
gets an MLM head (tied to its word embeddings) and a sentence-order head, and is trained
on the training split's raw transcripts, labels unused:

    P_mask(x_t) = p1 if word(x_t) ∈ 𝓛 else p2,   p1 = 0.4 > p2 = 0.15       (Algorithm 1)
    L_SL  = −Σ_{t∈M} log P(x_t | x_∖M)
    L_SOP = −y log f(s1, s2) − (1 − y) log(1 − f(s1, s2))
    L_text = λ1·L_SL + λ2·L_SOP

𝓛 is the union of the VADER and AFINN-165 lexicons (single words, lower-cased, edge
punctuation stripped); a word piece is "sentiment" when its whole word is.

Interpretations:
- Masked positions follow BERT's 80 / 10 / 10 rule ([MASK] / random token / unchanged);
  special tokens are never masked.
- Sentence pairs: consecutive segments of the same video (ids `<video>_<clip>`) in
  their true order (y = 1) or swapped (y = 0); a transcript with no successor is split
  into two halves at its middle word. "Polarity-aware": each pair's SOP loss is weighted
  by 1 + |c(s1) − c(s2)|, c = VADER compound score, so pairs whose order carries an
  emotional transition count up to three times as much.
- Gentle adaptation (the paper gives no optimiser details). all-MiniLM-L6-v2 ships
  without an MLM head, so a fresh head's early gradients would pull the encoder towards
  noise: the first `head_warmup_steps` train only the heads (encoder frozen), the heads
  use `head_lr`, the encoder the smaller `lr`, and only the top `train_layers`
  Transformer layers adapt. The word embeddings stay frozen: they are also the MLM
  decoder, and keeping them fixed keeps stage 2's input vocabulary where it was.
  (Measured: adapting all layers and embeddings at 5e-5 from the first step cost
  tssp_msa about 2 points of Non0 Acc-2 on MOSI; docs/models/tssp_msa.md.)
- Corpus: the training split of `--data`, plus the training transcripts of every
  dataset in `extra_data` (the paper pretrains on MOSI, MOSEI and MELD text together).
  Only training splits are read, so no validation or test transcript is seen.
- Output: the adapted encoder (`encoder.*`) and both heads as safetensors. Stage 2 uses
  it by re-encoding transcripts (`tssp_msa -m pretrained_text=OUT`), see that model.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.data.core import MSADataset
from msakit.errors import ConfigError
from msakit.pretrain import PretrainObjective, register_objective
from msakit.pretrain._loop import guarded_steps, prefixed, save_weights

_EDGE_PUNCT = re.compile(r"^\W+|\W+$")


@dataclass
class SMLMConfig:
    epochs: int = 1  # passes over the training transcripts (CPU-sized default)
    batch_size: int = 16
    lr: float = 2e-5  # encoder learning rate
    head_lr: float = 1e-3  # MLM transform + bias and SOP head
    head_warmup_steps: int = 40  # first steps train the heads only (encoder frozen)
    train_layers: int = 2  # top Transformer layers adapted (MiniLM has 6); embeddings always frozen
    extra_data: tuple[str, ...] = ()  # more dataset specs whose training transcripts join the corpus
    max_len: int = 50  # tokens per transcript, as the precomputed MOSI features
    p_sentiment: float = 0.4  # p1: masking probability of lexicon tokens
    p_other: float = 0.15  # p2: masking probability of the other tokens
    mlm_weight: float = 1.0  # λ1
    sop_weight: float = 0.5  # λ2
    max_steps: int = 0  # stop after this many steps (0 = all epochs)
    save_every: int = 40  # steps between checkpoints
    seed: int = 0


@lru_cache(maxsize=1)
def sentiment_lexicon() -> frozenset[str]:
    """Single-word entries of VADER ∪ AFINN-165, lower-cased."""
    from importlib.resources import files

    words: set[str] = set()
    vader = files("vaderSentiment").joinpath("vader_lexicon.txt").read_text(encoding="utf-8")
    words.update(line.split("\t", 1)[0].lower() for line in vader.splitlines() if line.strip())
    afinn = files("afinn").joinpath("data", "AFINN-en-165.txt").read_text(encoding="utf-8")
    words.update(line.rsplit("\t", 1)[0].lower() for line in afinn.splitlines() if line.strip())
    return frozenset(w for w in words if w.isalpha())


def is_sentiment_word(word: str) -> bool:
    return _EDGE_PUNCT.sub("", word.lower()) in sentiment_lexicon()


def masking_probabilities(
    word_ids: list[list[int | None]],
    words: list[list[str]],
    shape: tuple[int, ...] | torch.Size,
    *,
    p_sentiment: float,
    p_other: float,
) -> Tensor:
    """Algorithm 1: P_mask per token (B, L): p1 for pieces of lexicon words, p2 for other words,
    0 for special and padding tokens (`word_ids` from the tokenizer, None = special)."""
    prob = torch.zeros(tuple(shape))
    for b, ids in enumerate(word_ids):
        for t, w in enumerate(ids):
            if w is not None:
                prob[b, t] = p_sentiment if is_sentiment_word(words[b][w]) else p_other
    return prob


def sop_weights(pairs: list[tuple[str, str]], polarity: dict[str, float]) -> Tensor:
    """Polarity-aware SOP: pair (s1, s2) weighs 1 + |c(s1) − c(s2)|, c = VADER compound."""
    return torch.tensor([1.0 + abs(polarity[a] - polarity[b]) for a, b in pairs])


def sop_pairs(ids: list[str], texts: list[str]) -> list[tuple[str, str]]:
    """(s1, s2) in true order: the next segment of the same video, else the two halves of the text."""
    by_video: dict[str, list[tuple[int, str]]] = {}
    for i, t in zip(ids, texts, strict=True):
        video, _, clip = i.rpartition("_")
        if video and clip.isdigit():
            by_video.setdefault(video, []).append((int(clip), t))
    successor = {}
    for clips in by_video.values():
        clips.sort()
        for (_, a), (_, b) in pairwise(clips):
            successor[a] = b
    pairs = []
    for t in texts:
        if t in successor:
            pairs.append((t, successor[t]))
        else:
            words = t.split()
            if len(words) >= 4:
                pairs.append((" ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])))
    return pairs


class MLMHead(nn.Module):
    """BERT's prediction head; the decoder is tied to the encoder's word embeddings."""

    def __init__(self, embeddings: nn.Embedding) -> None:
        super().__init__()
        dim = embeddings.weight.shape[1]
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.embeddings = embeddings
        self.bias = nn.Parameter(torch.zeros(embeddings.weight.shape[0]))

    def forward(self, h: Tensor) -> Tensor:
        return F.linear(self.transform(h), self.embeddings.weight, self.bias)  # (N, V)


@register_objective("s_mlm")
class SentimentMLM(PretrainObjective):
    """Stage-1 text pretraining; writes the adapted MiniLM for `tssp_msa -m pretrained_text=OUT`."""

    config_class = SMLMConfig
    config: SMLMConfig

    def check(self, dataset: MSADataset) -> None:
        if dataset.split("train").raw_text is None:
            raise ConfigError(
                f"pretraining objective {self.name!r} needs the raw transcripts; dataset {dataset.info.name!r} "
                "has none (field 'text' of labels.csv / Batch.raw_text missing)"
            )

    def fit(self, dataset: MSADataset, out: Path, *, progress: bool = True) -> dict[str, Any]:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        from msakit.text_encoder import MODEL_NAME, load_minilm

        self.check(dataset)
        c = self.config
        torch.manual_seed(c.seed)
        rng = random.Random(c.seed)
        tokenizer, encoder = load_minilm()
        encoder.train()
        mlm = MLMHead(encoder.embeddings.word_embeddings)
        sop = nn.Linear(encoder.config.hidden_size, 1)  # f_SOP on the pair's [CLS]
        adapted = self._adapted_parameters(encoder)
        heads = [p for n, p in mlm.named_parameters() if not n.startswith("embeddings")] + list(sop.parameters())
        optimizer = torch.optim.AdamW([{"params": adapted, "lr": c.lr}, {"params": heads, "lr": c.head_lr}])
        texts, pairs = self._corpus(dataset)
        vader = SentimentIntensityAnalyzer()
        polarity = {t: vader.polarity_scores(t)["compound"] for t in {s for p in pairs for s in p}}

        def batches() -> Any:
            step = 0
            for _ in range(c.epochs):
                order = list(range(len(texts)))
                rng.shuffle(order)
                for start in range(0, len(order), c.batch_size):
                    if c.max_steps and step >= c.max_steps:
                        return
                    step += 1
                    yield (
                        step,
                        [texts[i] for i in order[start : start + c.batch_size]],
                        rng.sample(pairs, min(c.batch_size, len(pairs))),
                    )

        def loss_fn(item: Any) -> tuple[Tensor, dict[str, float]]:
            step, batch_texts, batch_pairs = item
            if step == c.head_warmup_steps + 1:  # the encoder joins after the heads' warm-up
                for p in adapted:
                    p.requires_grad_(True)
            l_mlm, n_masked, n_sent = self._mlm_loss(tokenizer, encoder, mlm, batch_texts, rng)
            l_sop = self._sop_loss(tokenizer, encoder, sop, batch_pairs, polarity, rng)
            loss = c.mlm_weight * l_mlm + c.sop_weight * l_sop
            return loss, {
                "mlm": float(l_mlm.detach()),
                "sop": float(l_sop.detach()),
                "masked": float(n_masked),
                "masked_sentiment": float(n_sent),
            }

        meta = {
            "objective": self.name,
            "modality": "text",
            "base_model": MODEL_NAME,
            "max_len": c.max_len,
            "dataset": dataset.info.name,
            "transcripts": len(texts),
            "config": asdict(c),
        }

        def save(step: int) -> None:
            tensors = {
                **prefixed(encoder, "encoder"),
                **prefixed(mlm.transform, "mlm.transform"),
                "mlm.bias": mlm.bias,
                **prefixed(sop, "sop"),
            }
            save_weights(out, tensors, {**meta, "step": step})

        summary = guarded_steps(
            self.name,
            batches(),
            loss_fn,
            optimizer,
            save,
            save_every=c.save_every,
            progress=progress,
        )
        return {
            **summary,
            "transcripts": len(texts),
            "sentence_pairs": len(pairs),
            "lexicon_words": len(sentiment_lexicon()),
            "out": str(out),
        }

    def _adapted_parameters(self, encoder: nn.Module) -> list[nn.Parameter]:
        """The top `train_layers` Transformer layers; everything else is frozen."""
        layers: nn.ModuleList = encoder.encoder.layer  # type: ignore[union-attr,assignment]
        if not 0 <= self.config.train_layers <= len(layers):
            raise ConfigError(
                f"pretraining objective {self.name!r}: train_layers must be in [0, {len(layers)}], "
                f"got {self.config.train_layers}"
            )
        for p in encoder.parameters():
            p.requires_grad_(False)
        top = layers[len(layers) - self.config.train_layers :]
        return [p for layer in top for p in layer.parameters()]

    def _corpus(self, dataset: MSADataset) -> tuple[list[str], list[tuple[str, str]]]:
        """Training transcripts of `dataset` and of every `extra_data` spec, and their SOP pairs."""
        from msakit.data import load_dataset

        texts: list[str] = []
        pairs: list[tuple[str, str]] = []
        for spec in ("", *self.config.extra_data):
            source = load_dataset(spec) if spec else dataset
            train = source.split("train")
            if train.raw_text is None:
                raise ConfigError(
                    f"pretraining objective {self.name!r}: extra_data {spec!r} has no raw transcripts "
                    "(field 'text' of labels.csv missing)"
                )
            kept = [(i, t) for i, t in zip(train.ids, train.raw_text, strict=True) if isinstance(t, str) and t.strip()]
            texts += [t for _, t in kept]
            pairs += sop_pairs([i for i, _ in kept], [t for _, t in kept])
        return texts, pairs

    def _mlm_loss(
        self, tokenizer: Any, encoder: nn.Module, head: MLMHead, texts: list[str], rng: random.Random
    ) -> tuple[Tensor, int, int]:
        c = self.config
        words = [t.split() for t in texts]
        enc = tokenizer(
            words, is_split_into_words=True, padding=True, truncation=True, max_length=c.max_len, return_tensors="pt"
        )
        ids = enc["input_ids"].clone()  # (B, L)
        prob = masking_probabilities(
            [enc.word_ids(b) for b in range(len(texts))], words, ids.shape, p_sentiment=c.p_sentiment, p_other=c.p_other
        )
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        masked = torch.rand(ids.shape, generator=gen) < prob  # (B, L)
        if not masked.any():  # keep one target so the loss is defined
            masked[0, int(prob[0].argmax())] = True
        roll = torch.rand(ids.shape, generator=gen)
        inputs = ids.clone()
        inputs[masked & (roll < 0.8)] = tokenizer.mask_token_id
        rand_tok = torch.randint(len(tokenizer), ids.shape, generator=gen)
        swap = masked & (roll >= 0.8) & (roll < 0.9)
        inputs[swap] = rand_tok[swap]
        hidden = encoder(input_ids=inputs, attention_mask=enc["attention_mask"]).last_hidden_state  # (B, L, 384)
        logits = head(hidden[masked])  # (N, V)
        n_sent = int((masked & (prob == c.p_sentiment)).sum()) if c.p_sentiment != c.p_other else 0
        return F.cross_entropy(logits, ids[masked]), int(masked.sum()), n_sent

    def _sop_loss(
        self,
        tokenizer: Any,
        encoder: nn.Module,
        head: nn.Linear,
        pairs: list[tuple[str, str]],
        polarity: dict[str, float],
        rng: random.Random,
    ) -> Tensor:
        if not pairs:
            return torch.zeros(())
        in_order = [rng.random() < 0.5 for _ in pairs]
        first = [a if keep else b for (a, b), keep in zip(pairs, in_order, strict=True)]
        second = [b if keep else a for (a, b), keep in zip(pairs, in_order, strict=True)]
        enc = tokenizer(
            first, second, padding=True, truncation=True, max_length=2 * self.config.max_len, return_tensors="pt"
        )
        cls = encoder(**enc).last_hidden_state[:, 0]  # (B, 384)
        y = torch.tensor(in_order, dtype=torch.float32)
        weight = sop_weights(pairs, polarity)  # polarity-aware
        return F.binary_cross_entropy_with_logits(head(cls).squeeze(-1), y, weight=weight)
