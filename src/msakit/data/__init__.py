"""Dataset readers. `load_dataset(spec)` accepts every source msakit reads."""

from __future__ import annotations

from pathlib import Path

from msakit.data.core import SPLITS, DatasetInfo, ModalityArrays, MSADataset, SplitData
from msakit.data.folder import is_dataset_folder, read_folder, write_folder
from msakit.data.synthetic import PRESETS, SyntheticConfig, make_synthetic, synthetic_preset
from msakit.errors import DataError


def load_dataset(spec: str | Path) -> MSADataset:
    """Open a dataset by spec.

    - ``synthetic`` or ``synthetic:<preset>``: the seeded synthetic benchmark;
    - a folder with ``meta.json``: msakit's own format (memory-mapped);
    - a ``.pkl`` file: an MMSA (``aligned_50.pkl``, ``unaligned_*.pkl``) or MulT /
      CMU-SDK (``*_data_noalign.pkl``) pickle, read with a restricted unpickler.
    """
    text = str(spec)
    if text == "synthetic" or text.startswith("synthetic:"):
        preset = text.partition(":")[2] or "default"
        return make_synthetic(synthetic_preset(preset), name=f"synthetic:{preset}")
    path = Path(text)
    if path.is_dir():
        if is_dataset_folder(path):
            return read_folder(path)
        raise DataError("folder has no meta.json; prepare it with `msakit data prepare`", path=path)
    if path.suffix == ".pkl":
        from msakit.data.pickles import read_pickle_dataset

        return read_pickle_dataset(path)
    if not path.exists():
        raise DataError("no such dataset (expected 'synthetic[:preset]', a dataset folder or a .pkl)", path=path)
    raise DataError("unsupported dataset file (expected a dataset folder or a .pkl)", path=path)


__all__ = [
    "PRESETS",
    "SPLITS",
    "DatasetInfo",
    "MSADataset",
    "ModalityArrays",
    "SplitData",
    "SyntheticConfig",
    "is_dataset_folder",
    "load_dataset",
    "make_synthetic",
    "read_folder",
    "synthetic_preset",
    "write_folder",
]
