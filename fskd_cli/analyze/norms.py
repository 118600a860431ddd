"""``fskd analyze norms``: per block, each image's feature norm, teacher on HR vs student on LR, with a
t-test per block (paper Section 3.3 and Figure 4)."""

from __future__ import annotations

import numpy as np
import torch

from ..core.io import write_csv
from .features import Study, paired_features, per_image_norms
from .figures import norm_boxplot
from .stats import t_test


def analyze_norms(study: Study, *, n_images: int = 1000, seed: int = 0, test: str = "welch") -> dict:
    """Write ``norms.csv`` (per image), ``norms_summary.csv`` (per model and block) and ``norms.png``."""
    rows = study.rows(n_images, seed)
    norms: dict[str, list[np.ndarray]] = {}
    for member in study.students:
        t_parts, s_parts = [], []
        for t_f, s_f, _ in paired_features(study, member, rows):
            t_parts.append(per_image_norms(t_f))
            s_parts.append(per_image_norms(s_f))
        norms.setdefault("teacher", [torch.cat(b).numpy() for b in zip(*t_parts, strict=True)])
        norms[member.label] = [torch.cat(b).numpy() for b in zip(*s_parts, strict=True)]
    per_image = [{"image": r.path, "model": model, "block": f"B{b + 1}", "norm": f"{v:.6g}"}
                 for model, blocks in norms.items() for b, values in enumerate(blocks)
                 for r, v in zip(rows, values, strict=True)]
    summary, pvalues = _summary(norms, test)
    write_csv(study.out / "norms.csv", per_image, ["image", "model", "block", "norm"])
    write_csv(study.out / "norms_summary.csv", summary, list(summary[0]))
    fig = norm_boxplot(norms, pvalues, study.out / "norms.png",
                       f"Feature norm, teacher (HR) vs students (x{study.scale} LR); {test} t-test, *** p < 0.01")
    return {"summary": summary, "figure": str(fig), "csv": str(study.out / "norms.csv")}


def _summary(norms: dict[str, list[np.ndarray]], test: str) -> tuple[list[dict], dict[str, list[float]]]:
    """Mean, std and (students) the t-test against the teacher, per model and block; the p-values per student."""
    summary, pvalues = [], {}
    for model, blocks in norms.items():
        for b, v in enumerate(blocks):
            row = {"model": model, "block": f"B{b + 1}", "n": len(v), "mean": f"{v.mean():.6g}",
                   "std": f"{v.std(ddof=1):.6g}", "test": "", "t": "", "p": "", "significant_p<0.01": ""}
            if model != "teacher":
                t, p = t_test(norms["teacher"][b], v, test)
                row.update(test=test, t=f"{t:.6g}", p=f"{p:.3g}", **{"significant_p<0.01": p < 0.01})
                pvalues.setdefault(model, []).append(p)
            summary.append(row)
    return summary, pvalues
