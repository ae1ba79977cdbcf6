"""The demo's HTML page (issue 6): every picture and number of one ``mien demo`` run."""

from __future__ import annotations

import datetime
from pathlib import Path

from mien.report.html import Section, write_page

DISENTANGLEMENT = [("MIG", "mig"), ("MIG ({})", "mig_regularised"), ("SAP", "sap"),
                   ("DCI D", "dci_disentanglement"), ("DCI C", "dci_completeness"), ("DCI I", "dci_informativeness"),
                   ("FactorVAE score", "factor_vae"), ("PSNR (dB)", "psnr"), ("csim_mien", "csim_mien")]


def write_report(out: Path, results: dict, seconds: float, labels: dict[str, str], vae_names: tuple[str, ...],
                 n_codes: int, run: str) -> Path:
    """``out/index.html`` from the stages' ``results`` (their pictures lie in ``out/<stage>/``);
    ``labels`` names the models, ``vae_names`` are the VAE family's, ``run`` describes the run."""
    from mien import __version__

    world = Section("The procedural face world").text(
        "The data every model below is trained on, rendered on the fly: the 8 expressions, attributes, yaw and age.")
    world.image(out / "world" / "tour.png", out, "world tour").image(out / "world" / "samples_32px.png", out,
                                                                      "random faces at 32 px, the models' size")
    vaes = Section("VAE family: samples, reconstructions, traversals, interpolations").text(
        "Traversals sweep one latent dimension per row over the 2-98 % range of the encoded test faces; the AR-VAE's "
        "rows tied to an attribute are labelled with it. Interpolations go from the left face to the right one.")
    for name in vae_names:
        d, label = out / name, labels[name]
        for pic, what in (("samples.png", "samples from the prior"), ("reconstructions.png", "inputs and reconstructions"),
                          ("traversal.png", "latent traversal"), ("interpolation_lerp.png", "lerp"),
                          ("interpolation_slerp.png", "slerp")):
            vaes.image(d / pic, out, f"{label}: {what} ({results[name]['steps']} steps)")
    regularised = ", ".join(results["arvae"]["regularised"])
    held = "; ".join(f"{labels[n]}: {', '.join(f'{k} {v}' for k, v in results[n]['fixed'].items())}" for n in vae_names)
    table = Section("Disentanglement and reconstruction").table(
        ["model"] + [h.format(regularised) for h, _ in DISENTANGLEMENT],
        [[labels[n]] + [results[n]["metrics"][k] for _, k in DISENTANGLEMENT] for n in vae_names],
        f"{n_codes} unseen faces of each model's training world (factors held fixed there: {held}); MIG over "
        f"the factors that vary and over the AR-VAE's regularised ones")
    vq = results["vqvae"]["metrics"]
    vqs = Section("VQ-VAE").image(out / "vqvae" / "reconstructions.png", out, "inputs and reconstructions")
    vqs.image(out / "vqvae" / "samples.png", out, "samples: codes drawn uniformly and independently (no prior over "
                                                  "codes is fitted, so these show what the codebook alone gives)")
    vqs.table(["PSNR (dB)", "SSIM", "perplexity", "codes used"], [[vq["psnr"], vq["ssim"], vq["perplexity"], vq["codes_used"]]])
    diff = results["diffusion"]
    ds = Section("Latent diffusion conditioned on expression").text(
        f"DDIM, {diff['sampler_steps']} steps, classifier-free guidance {diff['guidance']}, {diff['per_class']} samples "
        f"per expression, each row one expression; accuracy is the evaluator's (chance 1/8), fid_mien and KID compare "
        f"with world faces of that expression.").image(out / "diffusion" / "samples.png", out, "samples per expression")
    ds.image(out / "diffusion" / "first_stage.png", out, "inputs and their reconstructions through the first stage "
                                                          "(the autoencoder the diffusion runs in)")
    ds.table(["expression", "accuracy", "fid_mien", "KID"],
             [[r["class"], r["expression_acc"], r["fid_mien"], r["kid_mien"]] for r in diff["rows"]])
    ed = results["edits"]
    es = Section("Emotion editing by DDIM inversion (Pikoulis §4.4, Table 4.2's structure)").text(
        f"Each row: a neutral face, then the edit to each emotion (t0 = {ed['t0']}, guidance {ed['guidance']}, "
        f"{ed['sampler_steps']} DDIM steps). PSNR, SSIM, lpips_mien and csim_mien compare each edit with its input.")
    es.image(out / "edits" / "edits.png", out, "neutral -> each emotion")
    es.table(["target", "accuracy", "PSNR (dB)", "SSIM", "lpips_mien", "csim_mien"],
             [[r["target"], r["expression_acc"], r["psnr"], r["ssim"], r["lpips_mien"], r["csim_mien"]] for r in ed["rows"]])
    es.table(["t0", "guidance", "accuracy", "PSNR (dB)", "SSIM", "lpips_mien", "csim_mien"],
             [[r["t0"], r["guidance"], r["expression_acc"], r["psnr"], r["ssim"], r["lpips_mien"], r["csim_mien"]]
              for r in ed["sweep"]], "the mean over the seven targets on a grid of editing strength t0 and guidance")
    sections = [world, vaes, table, vqs, ds, es]
    if "gan" in results:
        sections.append(gan_section(out, results["gan"]))
    times = Section("Run").table(["stage", "seconds"], [[k, v.get("seconds", 0.0)] for k, v in results.items()]
                                 + [["total (this run)", round(seconds, 1)]])
    subtitle = (f"mien {__version__} · {run} · {datetime.datetime.now():%Y-%m-%d %H:%M} · every number computed in this run")
    return write_page(out / "index.html", "mien demo", subtitle, sections + [times])


def gan_section(out: Path, gan: dict) -> Section:
    """StyleGAN2 (Haas Ch. 2.3): samples, truncation, style mixing, directions, inversions, scores."""
    m = gan["metrics"]
    sec = Section("StyleGAN2 on the world (Haas Ch. 2)").text(
        f"{gan['steps']} training steps. fid_mien, precision, recall, density and coverage on evaluator features of "
        f"{gan['n']} samples (psi 1) and {gan['n']} world faces.")
    sec.image(out / "gan" / "samples.png", out, "samples, psi = 1")
    sec.image(out / "gan" / "truncation.png", out, "truncation: each row one z, psi from 0 (the mean face w_avg) to 1")
    sec.image(out / "gan" / "style_mixing.png", out, f"style mixing: each cell takes the first {gan['mixing_cut']} "
                                                     "W+ codes (coarse styles) of its column's face, the rest of its row's")
    for pic, what in gan.get("pictures", []):
        sec.image(out / "gan" / pic, out, what)
    sec.table(["fid_mien", "precision", "recall", "density", "coverage"],
              [[m["fid_mien"], m["precision"], m["recall"], m["density"], m["coverage"]]])
    for title, header, rows in gan.get("tables", []):
        sec.table(header, rows, title)
    return sec
