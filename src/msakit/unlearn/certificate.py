"""The Modality Deletion Certificate: hashes, calibration, claims, evidence and a digest.

A certificate is one JSON file. `digest.value` is the sha256 of the canonical JSON
(sorted keys, no whitespace) of every other field, so any edit to the file is evident;
it is not a signature (whoever edits the file can recompute it), which is why
`verify_certificate` also re-derives what it can from the checkpoint (and, given them,
the original checkpoint and the data): the file hashes, the absence of the removed
modality's parameters, the calibration arithmetic, and the head's gradient residual.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msakit.data.core import SplitData
from msakit.errors import DataError

FORMAT = "msakit-modality-deletion-certificate"
VERSION = 1
CHECKPOINT_FILES = ("config.json", "model.safetensors")


def canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def digest_of(certificate: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in certificate.items() if k != "digest"})).hexdigest()


def seal(certificate: dict[str, Any]) -> dict[str, Any]:
    """The certificate with its tamper-evident digest."""
    body = {k: v for k, v in certificate.items() if k != "digest"}
    over = "sha256 of the canonical JSON (sorted keys, no whitespace) of every field but 'digest'"
    return {**body, "digest": {"algorithm": "sha256", "over": over, "value": digest_of(body)}}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_sha256(folder: str | Path) -> dict[str, Any]:
    """sha256 of each checkpoint file and one over them ("name sha256" lines, sorted)."""
    folder = Path(folder)
    files = {}
    for name in CHECKPOINT_FILES:
        path = folder / name
        if not path.is_file():
            raise DataError(f"checkpoint file {name!r} is missing", path=folder, field=name)
        files[name] = file_sha256(path)
    combined = hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(files.items())).encode()).hexdigest()
    return {"sha256": combined, "files": files}


def data_sha256(split: SplitData, indices: Iterable[int], modalities: Sequence[str], *, labels: bool) -> str:
    """sha256 over, per sample in order: its id, then per modality its valid steps (float32), then its label."""
    h = hashlib.sha256()
    for i in indices:
        h.update(split.ids[i].encode() + b"\0")
        for m in modalities:
            arr = split.modalities.get(m)
            if arr is None or not arr.present[i]:
                h.update(f"{m}:absent\0".encode())
                continue
            h.update(f"{m}:{int(arr.lengths[i])}\0".encode())
            h.update(np.ascontiguousarray(np.asarray(arr.values[i, : int(arr.lengths[i])], dtype=np.float32)).tobytes())
        if labels:
            h.update(np.asarray(split.labels[i]).tobytes())
    return h.hexdigest()


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    field: str = ""  # the certificate field the check concerns (dotted path), for the one-line failure


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str, field: str = "") -> None:
        self.checks.append(Check(name, bool(ok), detail, field or name))

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def lines(self) -> list[str]:
        return [f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in self.checks]


def read_certificate(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        cert = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable certificate: {exc}", path=path) from None
    if not isinstance(cert, dict) or cert.get("format") != FORMAT:
        raise DataError(f"not a modality deletion certificate (format must be {FORMAT!r})", path=path, field="format")
    if cert.get("version") != VERSION:
        raise DataError(f"certificate version {cert.get('version')!r} is not {VERSION}", path=path, field="version")
    return cert


def check_calibration(cert: dict[str, Any], result: Verification) -> None:
    """Re-derive the noise scales from the certificate's own numbers."""
    from msakit.unlearn.head import noise_scale
    from msakit.unlearn.saliency import gaussian_sigma

    try:
        head, body = cert["calibration"]["head"], cert["calibration"]["body"]
        sigma_b = noise_scale(head["gradient_residual_bound"], head["epsilon"], head["delta"])
        result.add(
            "head noise scale",
            math.isclose(sigma_b, head["objective_noise_sigma"], rel_tol=1e-9, abs_tol=1e-15),
            f"σ_β = sqrt(2 ln(1.5/δ))·ε'/ε = {sigma_b:.3g} (certificate: {head['objective_noise_sigma']:.3g})",
            "calibration.head.objective_noise_sigma",
        )
        residual = cert["evidence"]["head_gradient_residual"]
        result.add(
            "head gradient residual within the bound",
            residual <= head["gradient_residual_bound"],
            f"measured {residual:.3g} ≤ ε' = {head['gradient_residual_bound']:.3g}",
            "evidence.head_gradient_residual",
        )
        sigma = gaussian_sigma(body["sensitivity"], body["epsilon"], body["delta"])
        result.add(
            "body noise scale",
            math.isclose(sigma, body["sigma"], rel_tol=1e-9, abs_tol=1e-15),
            f"σ = C·sqrt(2 ln(1.25/δ))/ε = {sigma:.3g} (certificate: {body['sigma']:.3g})",
            "calibration.body.sigma",
        )
    except (KeyError, TypeError, ValueError) as exc:
        result.add("calibration fields", False, f"missing or malformed: {exc}", "calibration")


__all__ = [
    "FORMAT",
    "VERSION",
    "Check",
    "Verification",
    "canonical",
    "check_calibration",
    "checkpoint_sha256",
    "data_sha256",
    "digest_of",
    "file_sha256",
    "read_certificate",
    "seal",
]
