"""`msakit unlearn` and `msakit verify-certificate`: delete a modality, check the certificate."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from msakit.cli.common import FORMATTER
from msakit.errors import DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "unlearn",
        help="remove one modality (for some training samples or all) from a trained model, with a certificate",
        description=(
            "Edit CHECKPOINT (a model with a convex head: mbd) so that it forgets modality M, for the training "
            "samples listed in --samples (one id per line) or for all of them, and write OUT/: the edited "
            "checkpoint and certificate.json (what was removed, hashes of the checkpoint before and after and of "
            "the data concerned, the calibration, what is and is not guaranteed, the evidence measured, a digest). "
            "OUT must not exist; nothing is written unless everything succeeds."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint folder, e.g. runs/mbd/seed1/best")
    p.add_argument("--modality", required=True, choices=("text", "audio", "visual"), help="the modality to remove")
    p.add_argument("--samples", type=Path, help="file of training-sample ids (one a line); default: every sample")
    p.add_argument("--data", required=True, help="the dataset spec the checkpoint was trained on")
    p.add_argument("--out", type=Path, required=True, help="new folder for the edited checkpoint + certificate.json")
    p.add_argument("--epsilon", type=float, default=1.0, help="ε of the head and body calibrations")
    p.add_argument("--delta", type=float, default=1e-5, help="δ of the head and body calibrations")
    p.add_argument("--fraction", type=float, default=0.05, help="share of body parameters selected by saliency")
    p.add_argument("--clip", type=float, default=0.1, help="one record's step is clipped to clip·‖θ_c‖/n")
    p.add_argument("--l2", type=float, nargs="+", help="head L2 strengths to choose from on validation")
    p.add_argument("--saliency-samples", type=int, default=32, help="forget samples the body update is estimated on")
    p.add_argument("--seed", type=int, default=0, help="seed of the saliency sampling and the head's noise")
    p.add_argument(
        "--noise-seed", type=int, help="seed of the body's Gaussian noise, recorded (default: drawn from the OS, not)"
    )
    p.set_defaults(func=run_unlearn)

    p = subparsers.add_parser(
        "verify-certificate",
        help="re-check a modality deletion certificate against the edited checkpoint",
        description=(
            "Re-check every verifiable field of CERTIFICATE: its digest, the edited checkpoint's hash, that the "
            "removed modality's parameters are gone, the calibration arithmetic; with --original the hash of the "
            "checkpoint before; with --data the hashes of the data concerned and the head's gradient residual. "
            "Exits 2 when anything does not hold: each check is printed with its reason, then one line naming "
            "the certificate and the first failed field."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("certificate", type=Path, help="certificate.json written by `msakit unlearn`")
    p.add_argument("--checkpoint", type=Path, required=True, help="the edited checkpoint folder")
    p.add_argument("--original", type=Path, help="the checkpoint before the deletion")
    p.add_argument("--data", help="the dataset spec, to re-check the data hashes and the head")
    p.set_defaults(func=run_verify)


def run_unlearn(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.unlearn import UnlearnSettings, unlearn

    settings = UnlearnSettings(
        epsilon=args.epsilon,
        delta=args.delta,
        fraction=args.fraction,
        clip=args.clip,
        saliency_samples=args.saliency_samples,
        seed=args.seed,
        noise_seed=args.noise_seed,
    )
    if args.l2:
        settings = dataclasses.replace(settings, l2_grid=tuple(args.l2))
    dataset = load_dataset(args.data)
    cert = unlearn(
        args.checkpoint,
        dataset,
        args.modality,
        args.out,
        samples_file=args.samples,
        data_spec=args.data,
        settings=settings,
    )
    removed, evidence = cert["removed"], cert["evidence"]
    scope = "every training sample" if cert["request"]["scope"] == "modality" else f"{removed['samples']} samples"
    print(f"removed {removed['modality']} for {scope} in {evidence['seconds']:.1f} s -> {args.out}")
    print(f"  deleted {len(removed['parameters_deleted'])} tensors; updated {removed['body_candidates']} body elements")
    for name in ("attack_feature_probe_r2", "attack_membership_auc"):
        if name in evidence:
            print(f"  {name}: original {evidence[name]['original']:.3f}, unlearned {evidence[name]['unlearned']:.3f}")
    print(f"  certificate: {args.out / 'certificate.json'} (digest {cert['digest']['value'][:16]}…)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.unlearn import verify_certificate

    dataset = load_dataset(args.data) if args.data else None
    result = verify_certificate(args.certificate, args.checkpoint, original=args.original, dataset=dataset)
    for line in result.lines():
        print(line)
    print(json.dumps({"verified": result.ok, "failed": [c.name for c in result.failed]}))
    if result.failed:  # a failed check is a failed verification of the input: exit 2, one line naming the field
        first = result.failed[0]
        more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
        raise DataError(
            f"verification failed: {first.name}: {first.detail}{more}", path=args.certificate, field=first.field
        )
    return 0
