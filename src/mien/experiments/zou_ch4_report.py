"""The report of `mien reproduce zou-ch4`: Tab. 4.1 and the §4.6.2 figures as mean +- std over the
outer folds beside the thesis's values, Fig. 4.6 as a PNG plot, the saliency maps (Eq. 4.12) drawn
on the mean test mesh, ``results.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mien.io import atomic_write_text

# Zou thesis Tab. 4.1 and §4.6.2 (percent, mm)
THESIS = {"CA_dvae": "99.59 +- 0.34", "CA_c": "99.59 +- 0.34 (3/752 errors)", "OSRSR": "99.10 +- 0.92",
          "SSRSR": "100", "RE": "1.647 +- 0.098", "RE_vae": "1.728", "C_on_vae": "97.17 +- 1.05",
          "C_on_dvae": "99.59 +- 0.34"}
ROWS = {"CA_dvae": "CA, DVAE's q_0 (%)", "CA_c": "CA, classifier C (%)", "OSRSR": "OSRSR (%)",
        "SSRSR": "SSRSR (%)", "RE": "RE, DVAE sex preservation (mm)", "RE_vae": "RE, sigma-VAE (mm)",
        "C_on_vae": "C on VAE reconstructions (%)", "C_on_dvae": "C on DVAE reconstructions, estimated label (%)"}
FIG_ROWS = {"c": "C", "dvae": "DVAE", "c_recon": "DVAE + C_recon", "vae_c": "VAE + C"}


def mean_std(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _cell(key: str, values) -> str:
    m, s = mean_std(values)
    return f"{m:.3f} +- {s:.3f}" if key.startswith("RE") else f"{100 * m:.2f} +- {100 * s:.2f}"


def table_4_1(results: list[dict]) -> str:
    lines = ["### Tab. 4.1 and §4.6.2 (mean +- std over the folds; thesis beside)", "",
             "| Metric | mien | thesis |", "|---|---|---|"]
    lines += [f"| {name} | {_cell(k, [r[k] for r in results])} | {THESIS[k]} |" for k, name in ROWS.items()]
    chosen = ", ".join(f"fold {i}: alpha {r['alpha']:g}, sqrt(v) {r['sqrt_v']:g}" for i, r in enumerate(results))
    return "\n".join([*lines, "", f"Selected by the inner grid (highest OSRSR on V): {chosen}.", ""])


def figure_4_6(results: list[dict], out: Path, fractions) -> str:
    from mien.report.plots import save_line_plot

    curves = {FIG_ROWS[k]: list(np.mean([r["missing"][k] for r in results], 0)) for k in FIG_ROWS}
    save_line_plot(out / "fig4_6.png", [100 * f for f in fractions], curves, "missing data (% of the extent, one side)",
                   "accuracy", ylim=(0.4, 1.0), title="Fig. 4.6 (mean over folds and the six sides)")
    head = "| Method | " + " | ".join(f"{100 * f:.0f} %" for f in fractions) + " |"
    rows = [f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in ys) + " |" for name, ys in curves.items()]
    return "\n".join(["### Fig. 4.6: accuracy (%) against the fraction removed", "", head,
                      "|---|" + "---|" * len(fractions), *rows, "", "![Fig. 4.6](fig4_6.png)", ""])


def saliency_figure(saliency: dict, mesh: np.ndarray, faces: np.ndarray, out: Path) -> str:
    from mien.io import atomic_save_png
    from mien.report.mesh import colormap, mesh_grid

    names = list(saliency)
    colours = np.stack([colormap(saliency[n] / max(saliency[n].max(), 1e-12), 1.0) for n in names])
    grid = mesh_grid(np.stack([mesh] * len(names)), faces, labels=[f"{n} (relative)" for n in names], size=220,
                     colours=colours)
    atomic_save_png(grid, out / "saliency.png")
    return ("### Saliency maps (Eq. 4.12, mean over the first fold's test meshes; dark blue 0, yellow the "
            "largest value of each map)\n\n![saliency](saliency.png)\n")


def write_report(out: Path, results: list[dict], template, meshes, y, config_name: str, grid, fractions) -> Path:
    saliency = results[0].pop("saliency")
    results_json = {"folds": results, "grid": grid, "fractions": list(fractions),
                    "saliency": {k: v.tolist() for k, v in saliency.items()}}
    atomic_write_text(out / "results.json", json.dumps(results_json, indent=1))
    header = (f"## Zou thesis ch. 4 on the mesh world ({config_name}; {len(y)} meshes, {int(y.sum())} labelled 1; "
              f"{len(results)}-fold stratified CV, inner grid (alpha, sqrt(v)) in {grid})\n\n")
    body = [table_4_1(results), figure_4_6(results, out, fractions),
            saliency_figure(saliency, meshes.mean(0).numpy(), template.hierarchy.faces[0], out)]
    return atomic_write_text(out / "zou-ch4.md", header + "\n".join(body))
