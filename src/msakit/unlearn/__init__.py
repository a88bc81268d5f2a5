"""Deleting a modality from a trained model, with a verifiable Modality Deletion Certificate.

`unlearn` edits a checkpoint of a model with a convex head (MBD) and writes the edited
checkpoint plus `certificate.json`; `verify_certificate` re-checks it. What the
certificate can and cannot claim is in `msakit.unlearn.core` and docs/unlearning.md.
"""

from msakit.unlearn.certificate import Verification, checkpoint_sha256, read_certificate
from msakit.unlearn.core import CERTIFICATE, UnlearnSettings, read_sample_ids, unlearn, verify_certificate

__all__ = [
    "CERTIFICATE",
    "UnlearnSettings",
    "Verification",
    "checkpoint_sha256",
    "read_certificate",
    "read_sample_ids",
    "unlearn",
    "verify_certificate",
]
