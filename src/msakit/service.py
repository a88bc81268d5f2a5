"""The service layer under the CLI and the REST service: plain results, separate writers.

`load_model` opens a checkpoint once; `evaluate_split`, `predict_split` and
`predict_features` return plain result objects (`EvalResult`, `PredictionResult`);
`write_metrics_json`, `write_predictions_csv` and `prediction_json` turn them into files
or JSON-ready dicts. `msakit eval` / `msakit predict` and `msakit serve` are thin faces
over these functions, so the CLI and the service share one code path.

`predict_features` builds a `Batch` directly from arrays (no dataset, no collation
through a loader): per sample and modality a (D,) pooled vector or an (L, D) sequence.
Every array is checked before the model runs: a known modality, the checkpoint's width,
finite values, at most `max_samples` samples and `max_steps` steps; a failure is one
`DataError` naming the sample and field.

`use_onnx` gives a loaded checkpoint an onnxruntime backend (`msakit serve --onnx`): its exports
(`msakit.export.open_for`, each checked against the checkpoint) then run every request whose
samples fit one of their fixed lengths, and PyTorch the rest.
"""

from __future__ import annotations

import csv
import io
import math
import re
import struct
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msakit.batch import MODALITIES, Batch
from msakit.data.core import MSADataset, SplitData
from msakit.errors import DataError
from msakit.io import atomic_open, atomic_write_json
from msakit.models.base import MSAModel


@dataclass
class LoadedModel:
    """A checkpoint opened for inference, with what a client must know to call it."""

    name: str
    path: Path
    model: MSAModel
    meta: dict[str, Any]
    onnx: Any = None  # `msakit.export.OnnxGraphs` run instead of the model where a batch fits (`use_onnx`)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.model.modalities

    @property
    def dims(self) -> dict[str, int]:
        return {m: self.model.config.dim(m) for m in self.modalities}

    def metrics(self) -> dict[str, Any]:
        """What the checkpoint records of its own evaluation: a training run's best checkpoint has
        `valid` (+ epoch, seed); a packaged one may carry `metrics` (valid and test)."""
        if isinstance(self.meta.get("metrics"), dict):
            return {**self.meta["metrics"], "epoch": self.meta.get("best_epoch")}
        return {k: self.meta.get(k) for k in ("valid", "epoch", "seed")}

    def describe(self) -> dict[str, Any]:
        """JSON-ready: model, modalities and widths, feature sets (text encoder), metrics."""
        dataset = self.meta.get("dataset") or {}
        features = dict(dataset.get("features") or {})
        pipeline = (self.meta.get("extract") or {}).get("pipeline") or {}
        caps = self.model.declared_capabilities
        return {
            "name": self.name,
            "model": self.meta["model"],
            "modalities": list(self.modalities),
            "dims": self.dims,
            "task": "classification" if self.model.is_classifier else "regression",
            "class_names": list(dataset.get("class_names") or ()),
            "dataset": dataset.get("name"),
            "features": features,
            "text_encoder": features.get("text") or pipeline.get("text"),
            "metrics": self.metrics(),
            "capabilities": asdict(caps),
            "msakit_version": self.meta.get("msakit_version"),
            "backend": "onnxruntime" if self.onnx is not None else "pytorch",
            "onnx_steps": self.onnx.steps if self.onnx is not None else [],
        }


def load_model(path: str | Path, *, name: str | None = None) -> LoadedModel:
    """Open the checkpoint folder `path` (model.safetensors + config.json) on the CPU."""
    from msakit.training import load_checkpoint

    model, meta = load_checkpoint(path)
    return LoadedModel(name=name or meta["model"], path=Path(path), model=model, meta=meta)


def use_onnx(loaded: LoadedModel, paths: Sequence[str | Path]) -> LoadedModel:
    """Run `loaded`'s predictions in onnxruntime over `paths`, exports of this checkpoint (e.g. at
    several `msakit export onnx --steps`): a request (or a length-ordered chunk of one) runs on the
    shortest graph its samples fit, one longer than every graph in PyTorch. Each graph is checked at
    start-up against the checkpoint, outputs and per-sample explanations within 1e-4; another
    checkpoint's graph, one that lacks an explanation the model reports, a model that reports
    uncertainty, and one whose outputs depend on padding (`Capabilities.padding_invariant` False) are
    refused (`msakit.export.ExportError`, exit code 2)."""
    from msakit.export import ExportError, open_for

    if not loaded.model.declared_capabilities.padding_invariant:
        raise ExportError(
            f"model {loaded.meta['model']!r} ({loaded.path}) declares padding_invariant=False: its outputs depend on "
            "padding, and a graph pads every request to its fixed length; serve it without --onnx"
        )
    loaded.onnx = open_for(loaded, paths, explanations=True)
    return loaded


# ---- results ---------------------------------------------------------------------------


@dataclass
class EvalResult:
    checkpoint: str
    model: str
    dataset: str
    split: str
    metrics: dict[str, float]


@dataclass
class SamplePrediction:
    """One sample's prediction and explanations (weights/uncertainty: None when not reported)."""

    id: str
    prediction: float
    label: float | None = None
    scores: list[float] | None = None  # class logits, classifiers only
    present: dict[str, bool] = field(default_factory=dict)
    weights: dict[str, float] | None = None
    uncertainty: dict[str, float] | None = None
    explanations: dict[str, Any] = field(default_factory=dict)


@dataclass
class PredictionResult:
    model: str
    task: str
    samples: list[SamplePrediction]


# ---- functions ---------------------------------------------------------------------------


def _checked(loaded: LoadedModel, dataset: MSADataset) -> None:
    from msakit.training.compat import check_compatible

    check_compatible(loaded.meta, dataset.info, loaded.path)


def evaluate_split(loaded: LoadedModel, dataset: MSADataset, split: str) -> EvalResult:
    """MMSA metrics (msakit.metrics) of the checkpoint on one split of `dataset`."""
    from msakit.training import evaluate

    _checked(loaded, dataset)
    metrics = evaluate(loaded.model, dataset.split(split), dataset.info.metric_set)
    return EvalResult(str(loaded.path), loaded.meta["model"], dataset.info.name, split, metrics)


def _samples(loaded: LoadedModel, batch: Batch, with_labels: bool, onnx: Any = None) -> list[SamplePrediction]:
    model = loaded.model
    graph = onnx.for_batch(batch) if onnx is not None else None  # `msakit.export.OnnxGraphs`: the shortest that fits
    if graph is not None:
        out = graph.output(batch)
    else:  # PyTorch, also for a batch longer than every exported graph
        _eval_mode(model)
        with torch.no_grad():
            out = model(batch)
    # one conversion per tensor and batch (tolist), not one tensor access per sample and element
    pred = out.prediction.argmax(-1) if model.is_classifier else out.prediction.reshape(len(batch.ids), -1)[:, 0]
    preds = pred.tolist()
    labels = batch.labels.tolist() if with_labels else None
    scores = out.prediction.tolist() if model.is_classifier else None
    present = batch.present.tolist()
    weights = out.modality_weights.tolist() if out.modality_weights is not None else None
    uncertainty = out.uncertainty.tolist() if out.uncertainty is not None else None
    explain = {k: v.tolist() for k, v in out.explanations.items() if v.dim() >= 1 and len(v) == batch.size}

    def per_modality(rows: list[list[float]] | None, i: int) -> dict[str, float] | None:
        return None if rows is None else {m: float(rows[i][j]) for j, m in enumerate(MODALITIES)}

    return [
        SamplePrediction(
            id=sample_id,
            prediction=float(preds[i]),
            label=float(labels[i]) if labels is not None else None,
            scores=[float(x) for x in scores[i]] if scores is not None else None,
            present={m: bool(present[i][j]) for j, m in enumerate(MODALITIES)},
            weights=per_modality(weights, i),
            uncertainty=per_modality(uncertainty, i),
            explanations={k: v[i] for k, v in explain.items()},
        )
        for i, sample_id in enumerate(batch.ids)
    ]


def _eval_mode(model: MSAModel) -> None:
    """`model.eval()` when the model is in training mode. Only the top module's flag is read (`eval()`
    and `train()` set every submodule's): walking every submodule cost about 6 % of a batch-1
    request's CPU time when made on every request, and `eval()` itself a fifth."""
    if model.training:
        model.eval()


def _task(loaded: LoadedModel) -> str:
    return "classification" if loaded.model.is_classifier else "regression"


def predict_split(
    loaded: LoadedModel, dataset: MSADataset, split: str, *, batch_size: int = 128, onnx: Any = None
) -> PredictionResult:
    """Every sample of a split, in split order: prediction, label, presence, weights and uncertainty.

    A model that declares `padding_invariant` is run on batches of similar length (each trimmed
    to its longest sample), which gives every sample the output it has alone, with less padding
    to compute, at most `REQUEST_CHUNK` samples per model call (docs/benchmarks.md). `onnx`: the
    checkpoint's exported graphs (`msakit.export.open_for`) to run instead of PyTorch (`msakit predict
    --onnx FILE ...`).
    """
    _checked(loaded, dataset)
    _eval_mode(loaded.model)
    data = dataset.split(split)
    order = inference_order(loaded.model, data)
    if loaded.model.declared_capabilities.padding_invariant and onnx is None:
        batch_size = min(batch_size, REQUEST_CHUNK)  # by length, smaller batches pad less (docs/benchmarks.md)
    samples: list[SamplePrediction | None] = [None] * len(data)
    build = data.batch if onnx is None else (lambda rows: onnx.batch(data, rows))  # ORT: at the graph's lengths
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, sample in zip(chunk, _samples(loaded, build(chunk), True, onnx), strict=True):
            samples[i] = sample
    return PredictionResult(loaded.meta["model"], _task(loaded), [s for s in samples if s is not None])


def inference_order(model: MSAModel, split: SplitData) -> list[int]:
    """The split's samples by length (longest modality first as the key) when `model` is padding-invariant,
    else in split order."""
    n = len(split)
    if not model.declared_capabilities.padding_invariant or n < 2:
        return list(range(n))
    arrays = list(split.modalities.values())
    if not arrays:
        return list(range(n))
    return _length_order([a.lengths for a in arrays], [a.values.shape[1] * a.values.shape[2] for a in arrays])


def _length_order(lengths: Sequence[np.ndarray], widths: Sequence[int]) -> list[int]:
    """Sample indices by valid length, one `lengths` array per modality: the widest modality
    (steps × dims in `widths`) is the primary key; stable, so ties keep their order."""
    keys = [length for _, length in sorted(zip(widths, lengths, strict=True), key=lambda pair: pair[0])]
    return [int(i) for i in np.lexsort(keys)]


def batch_from_arrays(
    loaded: LoadedModel,
    samples: Sequence[Mapping[str, Any]],
    *,
    ids: Sequence[str] | None = None,
    max_samples: int = 256,
    max_steps: int = 1024,
    source: str | None = None,
) -> Batch:
    """A validated `Batch` from per-sample arrays: modality -> (D,) or (L, D); a missing one is absent."""
    if not samples:
        raise DataError("no samples", path=source, field="samples")
    if len(samples) > max_samples:
        raise DataError(f"{len(samples)} samples, at most {max_samples} per request", path=source, field="samples")
    mods, dims = loaded.modalities, loaded.dims
    parsed: list[dict[str, np.ndarray]] = []
    for i, sample in enumerate(samples):
        if not isinstance(sample, Mapping):
            raise DataError("a sample must be an object of modality -> array", path=source, field=f"samples[{i}]")
        unknown = sorted(set(sample) - set(MODALITIES))
        if unknown:
            raise DataError(f"unknown modality {unknown[0]!r}; expected {list(mods)}", path=source, field=unknown[0])
        arrays = {}
        for m, value in sample.items():
            if m not in mods:
                continue  # a modality the model does not read
            where = f"samples[{i}].{m}"
            try:
                x = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):
                raise DataError("not a numeric array", path=source, field=where) from None
            if x.ndim == 1:
                x = x[None, :]
            if x.ndim != 2 or x.shape[1] != dims[m]:
                raise DataError(
                    f"shape {list(np.shape(value))}, expected ({dims[m]},) or (L, {dims[m]})", path=source, field=where
                )
            if not 1 <= x.shape[0] <= max_steps:
                raise DataError(f"{x.shape[0]} steps, expected 1..{max_steps}", path=source, field=where)
            # a finite sum means finite values (NaN and Inf propagate); only an overflowing one is looked at
            with np.errstate(over="ignore", invalid="ignore"):
                total = float(x.sum())
            if not math.isfinite(total) and not np.isfinite(x).all():
                raise DataError("holds NaN or Inf", path=source, field=where)
            arrays[m] = x
        need = loaded.model.declared_capabilities.min_modalities
        if len(arrays) < need:
            raise DataError(
                f"{len(arrays)} of the model's modalities {list(mods)} given, it needs at least {need}",
                path=source,
                field=f"samples[{i}]",
            )
        parsed.append(arrays)
    n = len(parsed)
    features: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    present = np.zeros((n, len(MODALITIES)), dtype=bool)
    for m in mods:
        steps = np.array([a[m].shape[0] if m in a else 0 for a in parsed])  # (B,), 0 where absent
        padded = np.zeros((n, max(int(steps.max()), 1), dims[m]), dtype=np.float32)
        for i, arrays in enumerate(parsed):  # numpy copies: no per-sample tensor or mask bookkeeping
            if m in arrays:
                padded[i, : steps[i]] = arrays[m]
        features[m] = torch.from_numpy(padded)
        masks[m] = torch.from_numpy(np.arange(padded.shape[1])[None, :] < steps[:, None])
        present[:, MODALITIES.index(m)] = steps > 0
    names = [str(s) for s in ids] if ids is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise DataError(f"{len(names)} ids for {n} samples", path=source, field="ids")
    return Batch(features=features, masks=masks, present=torch.from_numpy(present), labels=torch.zeros(n), ids=names)


def predict_features(
    loaded: LoadedModel,
    samples: Sequence[Mapping[str, Any]],
    *,
    ids: Sequence[str] | None = None,
    max_samples: int = 256,
    max_steps: int = 1024,
    source: str | None = None,
) -> PredictionResult:
    """Predictions for feature arrays given directly (see `batch_from_arrays`)."""
    caps = loaded.model.declared_capabilities
    if caps.reads_raw_text or caps.needs_dialogue_context or caps.needs_frames:
        raise DataError(
            f"model {loaded.meta['model']!r} reads raw text, dialogue context or frames; "
            "it cannot predict from feature arrays alone",
            path=loaded.path,
            field="capabilities",
        )
    batch = batch_from_arrays(loaded, samples, ids=ids, max_samples=max_samples, max_steps=max_steps, source=source)
    onnx = getattr(loaded, "onnx", None)  # a duck-typed `LoadedModel` (tests) may have no backend field
    if not loaded.model.declared_capabilities.padding_invariant or batch.size <= REQUEST_CHUNK:
        return PredictionResult(loaded.meta["model"], _task(loaded), _samples(loaded, batch, False, onnx))
    # a padding-invariant model: the request's samples by length, in chunks trimmed to their longest
    order = _length_order(
        [batch.masks[m].sum(1).numpy() for m in batch.modalities],
        [batch.features[m].shape[1] * batch.features[m].shape[2] for m in batch.modalities],
    )
    out: list[SamplePrediction | None] = [None] * batch.size
    for start in range(0, len(order), REQUEST_CHUNK):
        chunk = order[start : start + REQUEST_CHUNK]
        for i, sample in zip(chunk, _samples(loaded, _rows(batch, chunk), False, onnx), strict=True):
            out[i] = sample
    return PredictionResult(loaded.meta["model"], _task(loaded), [s for s in out if s is not None])


#: at most this many samples per model call when a padding-invariant model runs by length (a request
#: to the service, a split to `predict_split`): sorted calls of 64 pad less than calls of 256, and are
#: still large enough that per-call overhead stays small (docs/benchmarks.md, "Inference")
REQUEST_CHUNK = 64


def _rows(batch: Batch, rows: list[int]) -> Batch:
    """The batch's `rows`, each modality trimmed to their longest valid sequence."""
    idx = torch.tensor(rows)
    features, masks = {}, {}
    for m in batch.modalities:
        mask = batch.masks[m][idx]
        used = mask.any(0).nonzero()  # steps valid in some row (a request's mask may have holes)
        width = int(used.max()) + 1 if len(used) else 1
        features[m], masks[m] = batch.features[m][idx, :width], mask[:, :width]
    return Batch(
        features=features,
        masks=masks,
        present=batch.present[idx],
        labels=batch.labels[idx],
        ids=[batch.ids[i] for i in rows],
    )


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # a zip member's local header: signature ... name and extra lengths


# the header `np.save` writes for a plain array (format 1.0); anything else is left to numpy's parser
_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (True|False), 'shape': \(([\d, ]*)\), \} *\n"
)


def _npy_header(member: memoryview) -> tuple[tuple[int, ...], bool, np.dtype, int] | None:
    """(shape, Fortran order, dtype, data offset) of an .npy member; None when it does not parse.
    The common header is matched by `_NPY_HEADER` (numpy's own reader evaluates it as a Python
    literal, which was most of a small request's parsing); others go to `np.lib.format`."""
    if bytes(member[:8]) == b"\x93NUMPY\x01\x00" and len(member) >= 10:
        size = int.from_bytes(member[8:10], "little")
        found = _NPY_HEADER.fullmatch(bytes(member[10 : 10 + size]))
        if found is not None:
            shape = tuple(int(v) for v in found[3].split(b",") if v.strip())
            return shape, found[2] == b"True", np.dtype(found[1].decode()), 10 + size
    head = io.BytesIO(member[:4096])  # np.save's headers are a few hundred bytes
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            return None
    except ValueError:
        return None
    return shape, fortran, dtype, head.tell()


def _stored_arrays(data: bytes, infos: Sequence[zipfile.ZipInfo]) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz whose members are all stored uncompressed (`np.savez`), read in place:
    read-only views of `data` (`np.frombuffer`), no copy; None (read it with `np.load`) for a compressed
    member, a header this does not parse, or anything unexpected. The members' CRCs are not checked
    (TCP already checks the body; the check was 9 % of a batch-256 request): a damaged member can
    only give other numbers, which are then validated like any others."""
    out: dict[str, np.ndarray] = {}
    view = memoryview(data)
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
            return None
        sig, name_len, extra_len = _LOCAL_HEADER.unpack_from(data, info.header_offset)
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        member = view[start : start + info.file_size]
        if sig != b"PK\x03\x04" or len(member) != info.file_size:
            return None
        header = _npy_header(member)
        if header is None:
            return None
        shape, fortran, dtype, offset = header
        if dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        count = math.prod(shape)
        if offset + count * dtype.itemsize != info.file_size:
            return None
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=start + offset)
        out[info.filename[: -len(".npy")]] = flat.reshape(shape, order="F" if fortran else "C")
    return out


def samples_from_npz(
    data: bytes, *, source: str | None = None, max_bytes: int = 256 * 1024 * 1024
) -> tuple[list[dict[str, np.ndarray]], list[str] | None]:
    """Samples from an .npz: `text`/`audio`/`visual` as (B, L, D) (or (L, D) / (D,) for one sample),
    optional `<modality>_mask` (B, L) and `ids` (B,). Never unpickles; refuses an archive whose
    arrays would take more than `max_bytes` once decompressed.

    An archive of uncompressed members (`np.savez`) is read in place (`_stored_arrays`: .npz
    parsing through `np.load` was a quarter of a batch-1 request), and a sample whose mask is
    its first valid steps is a view of the request's array; a compressed archive goes through
    `np.load`, and a mask with holes is gathered (a copy)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
        unpacked = sum(info.file_size for info in infos)
        if unpacked > max_bytes:
            raise DataError(f"arrays of {unpacked} bytes decompressed, at most {max_bytes}", path=source)
        arrays = _stored_arrays(data, infos)
        if arrays is None:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
    except DataError:
        raise
    except ValueError as exc:  # an object array (a pickle inside) or a damaged archive
        raise DataError(f"not a plain .npz archive: {exc}", path=source) from None
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError ...
        raise DataError(f"not an .npz archive ({type(exc).__name__})", path=source) from None
    ids = [str(i) for i in arrays.pop("ids").tolist()] if "ids" in arrays else None
    masks = {k[: -len("_mask")]: arrays.pop(k) for k in list(arrays) if k.endswith("_mask")}
    unknown = sorted(set(arrays) - set(MODALITIES))
    if unknown:
        raise DataError(f"unknown array {unknown[0]!r}; expected {list(MODALITIES)}", path=source, field=unknown[0])
    sizes = set()
    for m, x in list(arrays.items()):
        if x.ndim in (1, 2):
            arrays[m] = x = x[None]
        if x.ndim != 3:
            raise DataError(f"shape {list(x.shape)}, expected (B, L, D)", path=source, field=m)
        sizes.add(x.shape[0])
    if len(sizes) > 1:
        raise DataError(f"modalities disagree on the number of samples: {sorted(sizes)}", path=source)
    n = sizes.pop() if sizes else 0
    samples: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for m, x in arrays.items():
        mask = masks.get(m)
        if mask is None:
            for i in range(n):
                if x.shape[1]:
                    samples[i][m] = x[i]
            continue
        if mask.shape != x.shape[:2]:
            raise DataError(f"shape {list(mask.shape)}, expected {list(x.shape[:2])}", path=source, field=f"{m}_mask")
        mask = mask.astype(bool, copy=False)
        valid = mask.sum(1)
        first = (np.arange(mask.shape[1])[None, :] < valid[:, None]) == mask  # valid steps first, then padding
        leading = first.all(1).tolist()
        for i, count in enumerate(valid.tolist()):
            if count:
                samples[i][m] = x[i, :count] if leading[i] else x[i][mask[i]]
    return samples, ids


def run_robustness(loaded: LoadedModel, dataset: MSADataset, protocols: Sequence[str], settings: Any) -> Any:
    """The robustness report (`msakit.robustness.protocols.RobustnessReport`) of a checkpoint."""
    from msakit.robustness.protocols import run_protocols
    from msakit.robustness.training import read_mli

    _checked(loaded, dataset)
    mli = read_mli(loaded.path)
    return run_protocols(loaded.model, dataset, protocols, settings, checkpoint=loaded.path, mli=mli)


# ---- writers ---------------------------------------------------------------------------


def write_rows_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """A CSV whose header is every key of `rows` in first-seen order (written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_robustness_report(report: Any, out: str | Path) -> list[Path]:
    """robustness.json, robustness.csv and the plots of a report in `out`."""
    from msakit.robustness.plots import plot_report

    out = Path(out)
    atomic_write_json(out / "robustness.json", report.to_dict())
    write_rows_csv(out / "robustness.csv", report.csv_rows())
    return [out / "robustness.json", out / "robustness.csv", *plot_report(report, out)]


def metrics_json(result: EvalResult) -> dict[str, Any]:
    return {"checkpoint": result.checkpoint, "split": result.split, "metrics": result.metrics}


def write_metrics_json(result: EvalResult, path: str | Path) -> Path:
    return atomic_write_json(path, metrics_json(result))


def prediction_json(result: PredictionResult) -> dict[str, Any]:
    """JSON-ready: each sample's fields as `asdict` gives them, shallow (a `SamplePrediction`'s lists and
    dicts are its own, built by `_samples`; `asdict`'s deep copy was a third of a batch-256 request)."""
    rows = [{name: getattr(s, name) for name in _SAMPLE_FIELDS} for s in result.samples]
    return {"model": result.model, "task": result.task, "predictions": rows}


_SAMPLE_FIELDS = tuple(f.name for f in fields(SamplePrediction))


PREDICTION_HEADER = ["id", "label", "prediction"] + [
    f"{kind}_{m}" for kind in ("present", "weight", "uncertainty") for m in MODALITIES
]


def write_predictions_csv(result: PredictionResult, path: str | Path) -> Path:
    """id, label, prediction, then per modality: present, weight and uncertainty ("" when not reported);
    then `ensemble_std` (the members' disagreement) when the model is a deep ensemble, and `probe_base`
    (the probe's part of a regression prediction) when the model adds one (msakit.layers.probe_base)."""
    extras = [
        k
        for k in ("ensemble_std", "probe_base")
        if any(isinstance(s.explanations.get(k), float) for s in result.samples)
    ]
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(PREDICTION_HEADER + extras)
        for s in result.samples:
            row: list[Any] = [s.id, "" if s.label is None else s.label, s.prediction]
            row += [int(s.present.get(m, False)) for m in MODALITIES]
            for extra in (s.weights, s.uncertainty):
                row += [extra[m] if extra is not None else "" for m in MODALITIES]
            row += [s.explanations.get(k, "") for k in extras]
            writer.writerow(row)
    return Path(path)
