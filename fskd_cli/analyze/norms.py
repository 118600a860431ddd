"""``fskd analyze norms``: per block, each image's feature norm, teacher on HR vs student on LR, with a
t-test per block (paper Section 3.3 and Figure 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.io import write_csv
from .features import load_models, paired_features, per_image_norms
from .figures import norm_boxplot
from .stats import t_test


def analyze_norms(teacher: Path, students: list[Path], data: str, scale: int, out: Path, *, split: str | None = "test",
                  n_images: int = 1000, seed: int = 0, test: str = "welch", device: str = "cpu") -> dict:
    t_ck, s_cks = load_models(teacher, students)
    norms: dict[str, list[np.ndarray]] = {}
    paths: list[str] = []
    for ck in s_cks:
        t_parts, s_parts = [], []
        paths = []
        for t_f, s_f, batch_paths in paired_features(t_ck, ck, data, split, scale, n_images, seed, device=device):
            t_parts.append(per_image_norms(t_f))
            s_parts.append(per_image_norms(s_f))
            paths += batch_paths
        norms.setdefault("teacher", [torch.cat(b).numpy() for b in zip(*t_parts)])
        norms[ck["label"]] = [torch.cat(b).numpy() for b in zip(*s_parts)]
    n_blocks = len(norms["teacher"])
    rows, summary, pvalues = [], [], {}
    for model, blocks in norms.items():
        for b, values in enumerate(blocks):
            rows += [{"image": p, "model": model, "block": f"B{b + 1}", "norm": f"{v:.6g}"} for p, v in zip(paths, values)]
    for model in norms:
        pvalues[model] = []
        for b in range(n_blocks):
            v = norms[model][b]
            row = {"model": model, "block": f"B{b + 1}", "n": len(v), "mean": f"{v.mean():.6g}", "std": f"{v.std(ddof=1):.6g}",
                   "test": "", "t": "", "p": "", "significant_p<0.01": ""}
            if model != "teacher":
                t, p = t_test(norms["teacher"][b], v, test)
                row.update(test=test, t=f"{t:.6g}", p=f"{p:.3g}", **{"significant_p<0.01": p < 0.01})
                pvalues[model].append(p)
            summary.append(row)
    pvalues.pop("teacher")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "norms.csv", rows, ["image", "model", "block", "norm"])
    write_csv(out / "norms_summary.csv", summary, list(summary[0]))
    fig = norm_boxplot(norms, pvalues, out / "norms.png",
                       f"Feature norm, teacher (HR) vs students (x{scale} LR); {test} t-test, *** p < 0.01")
    return {"summary": summary, "figure": str(fig), "csv": str(out / "norms.csv")}
