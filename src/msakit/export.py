"""ONNX export of a trained checkpoint, and an onnxruntime predictor for the exported graph.

    msakit export onnx runs/lf/seed1/best --out lf.onnx

Graph inputs, for each modality m the model reads (in text, audio, visual order): ``m`` (B, L_m,
D_m) float32 features and ``m_mask`` (B, L_m) bool valid steps; then ``present`` (B, 3) bool (the
`Batch.present` columns). The batch axis B is dynamic; each L_m is fixed at export (``steps``:
the dataset's padded length with ``--data``, else 64), and `feeds_from_batch` pads shorter
batches to it: msakit's models are padding-invariant (masks), and the traced
`nn.MultiheadAttention` bakes its sequence length into a reshape, so a dynamic L_m would not
run. Outputs: ``prediction`` (B, C); when the model reports them, ``modality_weights``
(B, 3); and ``explain.<name>`` for each of the model's per-sample `ModelOutput.explanations`
(a float tensor whose first axis is the batch: what `msakit serve` returns per sample). The
input normaliser is inside the graph (its statistics are buffers), so the graph
takes raw features exactly as `msakit predict` does.

How the file is written, and why (torch 2.13, onnxruntime 1.32):
- The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) traces the model and
  serialises the ONNX protobuf in C++. Its last step hands the bytes to the ``onnx`` Python package
  only to splice in onnxscript custom functions, which no msakit graph contains. The ``onnx``
  package needs protobuf >= 6 and mediapipe (the ``[extract]`` extra) pins protobuf < 5, so the two
  cannot share an environment; when ``onnx`` is not importable that splice is skipped (a
  pass-through) and nothing else changes. The dynamo exporter needs ``onnx`` and onnxscript
  throughout, so it is not used.
- A trace records one path through Python control flow. Every export is therefore checked: the
  file is loaded in onnxruntime and compared with PyTorch on probe batches whose batch sizes,
  lengths and absent modalities differ from the traced one; above ``tolerance`` (max abs
  difference, 1e-4 by default) the export is refused, naming the model and the tracer's warnings
  (where the Python code branched on a tensor value), and no file is left behind.
- Models that read raw text, dialogue context or frames have inputs an ONNX graph of feature arrays
  cannot carry; they are refused up front. An operator ONNX cannot express (e.g. a Mamba selective
  scan kernel) fails the export with the exporter's reason, named with the model.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from msakit.batch import MODALITIES, Batch, ModelOutput
from msakit.errors import ConfigError
from msakit.io import atomic_path
from msakit.models.base import MSAModel

OPSET = 17
DEFAULT_STEPS = 64


class ExportError(ConfigError):
    """The model cannot be expressed as an ONNX graph of feature arrays (exit code 2)."""


class _Graph(nn.Module):
    """Tensors in, tensors out: builds the `Batch` the model reads from the graph inputs."""

    def __init__(self, model: MSAModel, *, weights: bool, explanations: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = model
        self.modalities = model.modalities
        self.weights = weights
        self.explanations = tuple(explanations)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        n = len(self.modalities)
        features = {m: inputs[2 * i] for i, m in enumerate(self.modalities)}
        masks = {m: inputs[2 * i + 1] for i, m in enumerate(self.modalities)}
        present = inputs[2 * n]
        labels = torch.zeros(present.shape[0], dtype=torch.float32)
        out = self.model(Batch(features=features, masks=masks, present=present, labels=labels, ids=[]))
        outputs = [out.prediction]
        if self.weights:
            assert out.modality_weights is not None
            outputs.append(out.modality_weights)
        return (*outputs, *(out.explanations[k] for k in self.explanations))


EXPLAIN = "explain."  # graph output name prefix of a per-sample explanation


def per_sample_explanations(out: ModelOutput, size: int) -> list[str]:
    """The explanations of `out` a graph can carry: float tensors whose first axis is the batch of `size`."""
    return [
        k
        for k, v in out.explanations.items()
        if isinstance(v, Tensor) and v.is_floating_point() and v.dim() >= 1 and v.shape[0] == size
    ]


def input_names(model: MSAModel) -> list[str]:
    return [name for m in model.modalities for name in (m, f"{m}_mask")] + ["present"]


def _inputs(batch: Batch, model: MSAModel) -> tuple[Tensor, ...]:
    out: list[Tensor] = []
    for m in model.modalities:
        out += [batch.features[m].float(), batch.masks[m]]
    return (*out, batch.present)


def probe_batch(model: MSAModel, *, size: int, lengths: dict[str, int], absent: int = -1, seed: int = 0) -> Batch:
    """A random batch in the model's widths: valid steps vary per sample; sample 0 lacks modality `absent`."""
    gen = torch.Generator().manual_seed(seed)
    features, masks = {}, {}
    present = torch.zeros(size, len(MODALITIES), dtype=torch.bool)
    for j, m in enumerate(model.modalities):
        steps = lengths[m]
        x = torch.randn(size, steps, model.config.dim(m), generator=gen)
        valid = torch.randint(1, steps + 1, (size,), generator=gen)
        valid[0] = steps  # one sample spans the whole length, as a collated batch's longest does
        mask = torch.arange(steps)[None, :] < valid[:, None]
        has = torch.ones(size, dtype=torch.bool)
        if j == absent and size > 1:
            has[1] = False
        mask &= has[:, None]
        features[m], masks[m] = x * mask.unsqueeze(-1), mask
        present[:, MODALITIES.index(m)] = has
    return Batch(features=features, masks=masks, present=present, labels=torch.zeros(size), ids=[""] * size)


@contextlib.contextmanager
def _without_onnx_package() -> Iterator[None]:
    """Skip the exporter's onnxscript-function splice when the `onnx` package is absent (see above)."""
    try:
        import onnx  # noqa: F401

        yield
        return
    except ImportError:
        pass
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    original = onnx_proto_utils._add_onnxscript_fn
    onnx_proto_utils._add_onnxscript_fn = lambda model_bytes, custom_opsets: model_bytes
    try:
        yield
    finally:
        onnx_proto_utils._add_onnxscript_fn = original


def _refuse_unsupported(model: MSAModel, name: str) -> None:
    caps = model.declared_capabilities
    for flag, what in (
        (caps.reads_raw_text, "it re-encodes raw text (Batch.raw_text) inside forward"),
        (caps.needs_dialogue_context, "it reads the preceding dialogue turns (Batch.context)"),
        (caps.needs_frames, "it reads raw video frames"),
    ):
        if flag:
            raise ExportError(
                f"model {name!r} cannot be exported to ONNX: {what}, which no feature-array graph carries"
            )


def export_onnx(
    loaded: Any,
    out: str | Path,
    *,
    steps: dict[str, int] | None = None,
    tolerance: float = 1e-4,
    opset: int = OPSET,
) -> dict[str, Any]:
    """Write the checkpoint opened by `msakit.service.load_model` as ONNX to `out`.

    steps: modality -> the graph's fixed sequence length (default DEFAULT_STEPS). Returns what was
    written and the parity check's max abs difference.
    """
    model: MSAModel = loaded.model
    name = str(loaded.meta.get("model", type(model).__name__))
    _refuse_unsupported(model, name)
    unknown = sorted(set(steps or {}) - set(model.modalities))
    if unknown:
        raise ExportError(f"model {name!r} reads {list(model.modalities)}; no modality {unknown[0]!r} to set steps for")
    lengths = {m: int((steps or {}).get(m, DEFAULT_STEPS)) for m in model.modalities}
    if any(v < 1 for v in lengths.values()):
        raise ExportError(f"steps must be at least 1, got {lengths}")
    model.eval()
    with torch.no_grad():
        trial = model(probe_batch(model, size=5, lengths=dict.fromkeys(model.modalities, 3)))
    explained = per_sample_explanations(trial, 5)
    graph = _Graph(model, weights=trial.modality_weights is not None, explanations=explained).eval()
    outputs = ["prediction"] + (["modality_weights"] if graph.weights else []) + [EXPLAIN + k for k in explained]
    names = input_names(model)
    axes: dict[str, dict[int, str]] = {"present": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    for m in model.modalities:
        axes[m] = {0: "batch"}
        axes[f"{m}_mask"] = {0: "batch"}
    example = probe_batch(model, size=3, lengths=lengths, seed=1)
    out = Path(out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _without_onnx_package(), atomic_path(out) as tmp:
                torch.onnx.export(
                    graph,
                    _inputs(example, model),
                    str(tmp),
                    dynamo=False,
                    input_names=names,
                    output_names=outputs,
                    dynamic_axes=axes,
                    opset_version=opset,
                )
        except ExportError:
            raise
        except Exception as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ExportError(f"model {name!r} cannot be exported to ONNX: {type(exc).__name__}: {reason}") from None
    traced = sorted({f"{w.filename}:{w.lineno}" for w in caught if issubclass(w.category, torch.jit.TracerWarning)})
    try:
        worst = check_parity(model, out, lengths)
    except Exception as exc:
        out.unlink(missing_ok=True)
        raise ExportError(
            f"model {name!r}: onnxruntime cannot run the exported graph ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]})"
        ) from None
    if not worst <= tolerance:
        out.unlink(missing_ok=True)
        where = f"; the trace branched on tensor values at {', '.join(traced)}" if traced else ""
        raise ExportError(
            f"model {name!r} cannot be exported to ONNX faithfully: on probe batches the graph differs from "
            f"PyTorch by {worst:.3g} (tolerance {tolerance:g}){where}"
        )
    return {
        "path": str(out),
        "inputs": names,
        "outputs": outputs,
        "steps": lengths,
        "max_abs_diff": worst,
        "opset": opset,
    }


class OnnxPredictor:
    """An onnxruntime session over an exported graph, on one CPU thread unless told otherwise."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.steps = {i.name: int(i.shape[1]) for i in self.session.get_inputs() if i.name in MODALITIES}
        for i in self.session.get_inputs():  # a modality read only through its mask
            if i.name.endswith("_mask") and i.name[: -len("_mask")] not in self.steps:
                self.steps[i.name[: -len("_mask")]] = int(i.shape[1])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        used = {k: v for k, v in feeds.items() if k in self.inputs}  # the exporter drops inputs a model ignores
        return dict(zip(self.outputs, self.session.run(None, used), strict=True))

    def batch(self, split: Any, indices: Sequence[int]) -> Batch:
        """Samples `indices` of a `SplitData` as a `Batch` already at the graph's fixed lengths: one copy
        per modality, which `feeds_from_batch` then passes on as it is (the batch-1 path's overhead)."""
        idx = np.asarray(indices, dtype=np.int64)
        present = np.zeros((len(idx), len(MODALITIES)), dtype=bool)
        features, masks = {}, {}
        for j, m in enumerate(MODALITIES):
            arr = split.modalities.get(m)
            if arr is None:
                continue
            has = arr.present[idx].astype(bool)
            present[:, j] = has
            if m not in self.steps:
                continue
            steps, lengths = self.steps[m], arr.lengths[idx]
            if len(idx) and int(lengths.max()) > steps:
                raise ExportError(f"{m}: {int(lengths.max())} steps, the graph was exported for at most {steps}")
            width = min(steps, arr.values.shape[1])
            values = np.zeros((len(idx), steps, arr.values.shape[2]), dtype=np.float32)
            values[:, :width] = arr.values[idx, :width]
            mask = (np.arange(steps)[None, :] < lengths[:, None]) & has[:, None]
            values *= mask[..., None]
            features[m], masks[m] = torch.from_numpy(values), torch.from_numpy(mask)
        return Batch(
            features=features,
            masks=masks,
            present=torch.from_numpy(present),
            labels=torch.from_numpy(np.asarray(split.labels[idx])),
            ids=[split.ids[i] for i in idx],
        )

    def output(self, batch: Batch) -> ModelOutput:
        """The graph's `ModelOutput` for `batch`: prediction and, when exported, modality weights and
        per-sample explanations (the graph holds no uncertainty)."""
        got = self.run(feeds_from_batch(self, batch))
        weights = got.get("modality_weights")
        return ModelOutput(
            prediction=torch.from_numpy(got["prediction"]),
            modality_weights=torch.from_numpy(weights) if weights is not None else None,
            explanations={k[len(EXPLAIN) :]: torch.from_numpy(v) for k, v in got.items() if k.startswith(EXPLAIN)},
        )


class OnnxGraphs:
    """One or more exports of one checkpoint at different fixed lengths; each batch runs on the
    shortest graph it fits, so short samples do not pay for the longest export's padding."""

    def __init__(self, predictors: Sequence[OnnxPredictor]) -> None:
        self.predictors = sorted(predictors, key=lambda p: sum(p.steps.values()))

    def fitting(self, need: Mapping[str, int]) -> OnnxPredictor | None:
        """The shortest graph whose every fixed length holds `need` (modality -> steps), or None."""
        for predictor in self.predictors:
            if all(need.get(m, 0) <= steps for m, steps in predictor.steps.items()):
                return predictor
        return None

    def pick(self, split: Any, indices: Sequence[int]) -> OnnxPredictor:
        idx = np.asarray(indices, dtype=np.int64)
        need = {m: int(split.modalities[m].lengths[idx].max()) if len(idx) else 0 for m in self.predictors[0].steps}
        predictor = self.fitting(need)
        if predictor is None:
            longest = self.predictors[-1].steps
            raise ExportError(f"samples of {need} steps; the longest graph was exported for {longest} (export --steps)")
        return predictor

    def batch(self, split: Any, indices: Sequence[int]) -> Batch:
        return self.pick(split, indices).batch(split, indices)

    def for_batch(self, batch: Batch) -> OnnxPredictor | None:
        """The shortest graph `batch` (padded to its own width) fits, or None when it is longer than every one."""
        return self.fitting({m: batch.features[m].shape[1] for m in self.predictors[0].steps if m in batch.features})

    def output(self, batch: Batch) -> ModelOutput:
        predictor = self.for_batch(batch)
        return (predictor or self.predictors[-1]).output(batch)  # the longest refuses a longer batch, naming it

    @property
    def steps(self) -> list[dict[str, int]]:
        return [dict(p.steps) for p in self.predictors]


def open_for(
    loaded: Any, paths: Sequence[str | Path], *, tolerance: float = 1e-4, explanations: bool = False
) -> OnnxGraphs:
    """The graphs in `paths` (exports of checkpoint `loaded`, e.g. at several `--steps`), each checked
    against the checkpoint on probe batches within its lengths.

    Refuses (ExportError, naming the file) a graph that reads other modalities, one whose outputs
    differ from the checkpoint's by more than `tolerance` (another checkpoint's export), and a
    model that reports uncertainty, which the graph does not carry. With `explanations` (what
    `msakit serve` returns per sample; `msakit predict`'s CSV holds none) the graph must also carry
    every per-sample explanation the model reports, each within `tolerance`.
    """
    model: MSAModel = loaded.model
    model.eval()
    predictors = []
    for path in paths:
        try:
            predictor = OnnxPredictor(path)
        except ImportError:
            raise ExportError("running ONNX graphs needs onnxruntime: pip install 'msakit[export]'") from None
        except Exception as exc:  # no such file, not an ONNX model ... (onnxruntime's own exception types)
            reason = " ".join(str(exc).split())[:160]
            raise ExportError(
                f"{path}: onnxruntime cannot load it as an ONNX graph ({type(exc).__name__}: {reason})"
            ) from None
        if set(predictor.steps) != set(model.modalities):
            reads = sorted(predictor.steps)
            raise ExportError(f"{path}: the graph reads {reads}, the checkpoint {list(model.modalities)}")
        worst = 0.0
        for seed, size in ((11, 1), (12, 3)):
            probe = probe_batch(model, size=size, lengths=predictor.steps, seed=seed)
            with torch.no_grad():
                want = model(probe)
            if want.uncertainty is not None:
                raise ExportError(f"{path}: the model reports uncertainty, which the ONNX graph does not hold")
            got = predictor.output(probe)
            worst = max(worst, float((got.prediction - want.prediction.float()).abs().max()))
            if want.modality_weights is not None:
                if got.modality_weights is None:
                    raise ExportError(f"{path}: the graph has no modality_weights output; the model reports them")
                worst = max(worst, float((got.modality_weights - want.modality_weights.float()).abs().max()))
            for key in per_sample_explanations(want, size) if explanations else ():
                if key not in got.explanations:
                    raise ExportError(
                        f"{path}: the graph has no {EXPLAIN}{key} output, an explanation the model reports "
                        "(exported by an older msakit? export it again)"
                    )
                worst = max(worst, float((got.explanations[key] - want.explanations[key].float()).abs().max()))
        if not worst <= tolerance:
            raise ExportError(
                f"{path}: the graph differs from checkpoint {loaded.path} by {worst:.3g} on probe batches "
                f"(tolerance {tolerance:g}); was it exported from another checkpoint?"
            )
        predictors.append(predictor)
    if not predictors:
        raise ExportError("no ONNX graph given")
    return OnnxGraphs(predictors)


def feeds_from_batch(predictor: OnnxPredictor, batch: Batch) -> dict[str, np.ndarray]:
    """The graph inputs for `batch`, each modality padded to the graph's fixed length."""
    feeds: dict[str, np.ndarray] = {"present": batch.present.numpy()}
    for m, steps in predictor.steps.items():
        x, mask = batch.features.get(m), batch.masks.get(m)
        if x is None or mask is None:
            raise ExportError(f"the batch has no {m!r} features, which the graph reads")
        if x.shape[1] > steps:
            raise ExportError(f"{m}: {x.shape[1]} steps, the graph was exported for at most {steps} (export --steps)")
        if x.shape[1] == steps and x.dtype == torch.float32:  # already at the graph's length: no copy
            feeds[m], feeds[f"{m}_mask"] = x.numpy(), mask.numpy()
            continue
        values = np.zeros((x.shape[0], steps, x.shape[2]), dtype=np.float32)
        valid = np.zeros((x.shape[0], steps), dtype=bool)
        values[:, : x.shape[1]] = x.numpy()
        valid[:, : x.shape[1]] = mask.numpy()
        feeds[m], feeds[f"{m}_mask"] = values, valid
    return feeds


def check_parity(model: MSAModel, path: str | Path, steps: dict[str, int]) -> float:
    """Max abs difference between PyTorch and onnxruntime over probe batches unlike the traced one
    (other batch sizes, shorter sequences padded to the graph's length, absent modalities)."""
    predictor = OnnxPredictor(path)
    worst = 0.0
    short = {m: max(1, (n + 1) // 2) for m, n in steps.items()}
    probes = [
        probe_batch(model, size=1, lengths=dict.fromkeys(model.modalities, 1), seed=2),
        probe_batch(model, size=5, lengths=short, seed=3),
        probe_batch(model, size=4, lengths=steps, absent=0, seed=4),
        probe_batch(model, size=4, lengths=short, absent=len(model.modalities) - 1, seed=5),
    ]
    if model.declared_capabilities.min_modalities >= len(model.modalities):
        probes = probes[:2]  # every modality is required: no absent probes
    with torch.no_grad():
        for batch in probes:
            ref = model(batch)
            got = predictor.run(feeds_from_batch(predictor, batch))
            worst = max(worst, float(np.abs(got["prediction"] - ref.prediction.numpy()).max()))
            if "modality_weights" in got and ref.modality_weights is not None:
                worst = max(worst, float(np.abs(got["modality_weights"] - ref.modality_weights.numpy()).max()))
            for name in (k for k in got if k.startswith(EXPLAIN)):
                want = ref.explanations[name[len(EXPLAIN) :]].float().numpy()
                worst = max(worst, float(np.abs(got[name] - want).max()))
    return worst


__all__ = [
    "ExportError",
    "OnnxGraphs",
    "OnnxPredictor",
    "check_parity",
    "export_onnx",
    "feeds_from_batch",
    "input_names",
    "open_for",
]
