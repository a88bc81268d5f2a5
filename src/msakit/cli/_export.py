"""`msakit data export --format mmsa DIR OUT.pkl`: write a prepared dataset for MMSA.

`cli/data.py` adds this parser under `msakit data`; the leading underscore keeps the
module out of top-level command discovery.

MMSA's loader needs text, audio and vision arrays. A modality the dataset lacks (MOSI
here has no visual features) is written as a one-step, one-wide zero array with length
0, i.e. absent for every sample; msakit reads it back as absent. Sequences are written
as msakit stores them (valid steps first, padding after) with their lengths; see
benchmarks/compare_mmsa.py for the start padding MMSA's final-state models need.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from msakit.cli.common import FORMATTER
from msakit.data.core import DatasetInfo, ModalityArrays, MSADataset, SplitData
from msakit.errors import ConfigError

FORMATS = ("mmsa",)


def add_export_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="write a dataset as an MMSA-style pickle",
        description=(
            "Write DATA (a folder from `msakit data prepare`, 'synthetic[:preset]' or a .pkl) as an MMSA-style "
            "pickle OUT ({train, valid, test} dicts of text / audio / vision arrays, lengths and "
            "regression_labels), so the same data runs in msakit and in MMSA (with use_bert=False). "
            "A modality the dataset lacks is written as absent (one zero step, length 0)."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("data", help="dataset to export")
    p.add_argument("out", type=Path, help="output .pkl file")
    p.add_argument("--format", choices=FORMATS, default="mmsa", help="output format")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run_export)
    return p


def run_export(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.data.pickles import write_mmsa_pickle

    if args.format != "mmsa":
        raise ConfigError(f"export: unknown format {args.format!r}; choose from {', '.join(FORMATS)}")
    dataset = load_dataset(args.data)
    filled = fill_absent_modalities(dataset)
    out = write_mmsa_pickle(filled, args.out, overwrite=args.overwrite)
    added = sorted(set(filled.info.dims) - set(dataset.info.dims))
    sizes = ", ".join(f"{name} {len(split)}" for name, split in filled)
    note = f"; written as absent: {', '.join(added)}" if added else ""
    print(f"exported {dataset.info.name} ({sizes}) to {out} in MMSA format{note}")
    return 0


def fill_absent_modalities(dataset: MSADataset) -> MSADataset:
    """A copy where every modality the dataset lacks is a (N, 1, 1) zero array, absent everywhere."""
    from msakit.batch import MODALITIES

    missing = [m for m in MODALITIES if m not in dataset.info.dims]
    if not missing:
        return dataset
    splits = {}
    for name, split in dataset:
        n = len(split)
        empty = ModalityArrays(
            values=np.zeros((n, 1, 1), dtype=np.float32),
            lengths=np.zeros(n, dtype=np.int64),
            present=np.zeros(n, dtype=bool),
        )
        splits[name] = SplitData(
            labels=split.labels,
            ids=split.ids,
            modalities={**split.modalities, **dict.fromkeys(missing, empty)},
            raw_text=split.raw_text,
            targets=split.targets,
        )
    info = dataset.info
    dims = {**info.dims, **dict.fromkeys(missing, 1)}
    filled = DatasetInfo(
        name=info.name,
        metric_set=info.metric_set,
        num_classes=info.num_classes,
        label_range=info.label_range,
        dims=dims,
        class_names=info.class_names,
        description=info.description,
    )
    return MSADataset(filled, splits, source=dataset.source)
