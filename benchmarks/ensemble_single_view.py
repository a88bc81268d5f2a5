"""A read-only view of a deep-ensemble run's single model, for scripts that read RUN/seed*/best.

Member 0 of every seed of a `-t ensemble=K` run is exactly the single run of that seed. This
writes VIEW/seedN/best as a link to RUN/seedN/member0/best, and VIEW/results.json with member 0's
recorded validation metrics, so `benchmarks/probe_gap.py` scores the single model beside the
ensemble (RUN itself) without retraining:

    python benchmarks/ensemble_single_view.py runs/reliability/s8/ens/mmmo/ebmc runs/reliability/s8/ens/mmmo/ebmc-single
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from msakit.io import atomic_write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a -t ensemble=K run folder")
    p.add_argument("view", type=Path, help="the view folder to write")
    args = p.parse_args()
    run = args.run.resolve()
    res = json.loads((run / "results.json").read_text())
    seeds = []
    for s in res["seeds"]:
        if not s.get("members"):
            raise SystemExit(f"ensemble_single_view: error: {run}/results.json: seed {s['seed']} has no 'members'")
        link = args.view / f"seed{s['seed']}" / "best"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        os.symlink(run / f"seed{s['seed']}" / "member0" / "best", link)
        m0 = s["members"][0]
        seeds.append({"seed": s["seed"], "valid": m0["valid"], "best_epoch": m0["best_epoch"], "checkpoint": str(link)})
    view = {"model": res["model"], "dataset": res["dataset"], "seeds": seeds, "view_of": str(run)}
    atomic_write_json(args.view / "results.json", view)
    print(f"ensemble_single_view: {args.view} = member 0 of {run}")


if __name__ == "__main__":
    main()
