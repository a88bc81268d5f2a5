"""Checks that a checkpoint can read a dataset's features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msakit.data.core import DatasetInfo
from msakit.errors import DataError


def check_compatible(meta: dict[str, Any], info: DatasetInfo, checkpoint: Path) -> None:
    """DataError naming the field when the dataset's modalities or widths differ from training."""
    config = meta["model_config"]
    for m in config.get("modalities", ()):
        if m not in info.dims:
            continue  # a modality missing from the data is treated as absent for every sample
        expected = int(config.get(f"{m}_dim", info.dims[m]))
        if info.dims[m] != expected:
            raise DataError(
                f"{m} features are {info.dims[m]}-d in dataset {info.name!r}, "
                f"but the checkpoint was trained on {expected}-d",
                path=checkpoint,
                field=f"{m}_dim",
            )
    trained_on = (meta.get("dataset") or {}).get("features") or {}
    for m, feature_set in info.features.items():
        if m in trained_on and trained_on[m] != feature_set:
            raise DataError(
                f"{m} features of dataset {info.name!r} are {feature_set!r}, but the checkpoint was trained on "
                f"{trained_on[m]!r}; its normalisation statistics and weights do not apply (re-prepare the data "
                "with the checkpoint's extractor / --text-encoder, or retrain)",
                path=checkpoint,
                field=f"dataset.features.{m}",
            )
    if int(config.get("num_classes", 1)) != info.num_classes:
        raise DataError(
            f"checkpoint predicts {config.get('num_classes')} class(es), dataset {info.name!r} has {info.num_classes}",
            path=checkpoint,
            field="num_classes",
        )
