"""The Inception FID table: every cell of the given bench folders that has the TF-Inception FID
(`zoo bench --inception`), its floor row, and the published Fashion-MNIST FIDs beside them.

  .venv/bin/python benchmarks/inception_table.py results/isoflop/10tf/p1 results/scaling-fitted/100tf --out results/inception

Reads only the folders' cell files (cells/*.json, cells/_floor_inception.json); writes
INCEPTION.md and inception.json into --out. The published numbers are the papers' own figures,
quoted with the protocol each paper states; nothing here is recomputed from them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zoo.bench.settings import trained_by
from zoo.bench.store import cell_files, read_record

# (source, model, FID, spread as the paper gives it or None, what the number is)
PUBLISHED = [
    ("Lucic et al. 2018", "WGAN", 21.5, 1.6, "best of a large hyperparameter search; the ± as the paper gives it"),
    ("Lucic et al. 2018", "BEGAN", 22.9, None, "best of a large hyperparameter search"),
    ("Lucic et al. 2018", "WGAN-GP", 24.5, None, "best of a large hyperparameter search"),
    ("Lucic et al. 2018", "NS GAN", 26.5, None, "best of a large hyperparameter search"),
    ("Dai & Wipf 2019", "VAE", 43.6, None, "the paper's own VAE baseline"),
    ("Dai & Wipf 2019", "two-stage VAE", 29.3, None, "the paper's model"),
    ("Dai & Seljak 2021 (SIG)", "sliced iterative generator", 13.7, None, "the paper's model"),
]
PUBLISHED_PROTOCOL = (
    "Lucic et al. score 10,000 samples against the 10,000 test images with the TF-Inception (2015-12-05) "
    "graph of TF-GAN: gray images tiled to three channels and resized to 299x299 by TensorFlow's bilinear "
    "resize (their code, google/compare_gan, `eval_gan_lib.py`: `num_test_examples` 10,000, the test split). "
    "Dai & Wipf report theirs in a table beside Lucic et al.'s numbers, as the same measurement; Dai & "
    "Seljak's is quoted as their paper gives it.")
DIFFERENCES = [
    "Resize: zoo resizes 28x28 to 299x299 with PyTorch's bilinear interpolation (align_corners=False, "
    "pytorch-fid's convention); TF-GAN used TensorFlow 1's `resize_bilinear`, which samples the source "
    "grid without the half-pixel offset. The network and its weights are the same 2015-12-05 graph.",
    "Sample size and reference: the same, 10,000 samples against the 10,000 test images.",
    "What is compared: one training run per family (seed 0) under a 10 TFLOP training budget on a "
    "CPU, against the best run of a hyperparameter search (Lucic et al.) or the authors' trained models.",
]


def read_cells(folder: Path) -> tuple[list[dict], dict | None]:
    cells = [rec for rec in (read_record(p) for p in cell_files(folder)) if "fid_inception" in rec]
    floor_path = folder / "cells" / "_floor_inception.json"
    floor = json.loads(floor_path.read_text()) if floor_path.exists() else None
    return cells, floor


def _on(m: dict) -> str:
    n = m.get("threads")
    return f"{m.get('cpu')}, {n} thread{'' if n == 1 else 's'}"


def row(rec: dict, folder: Path) -> dict:
    prov, trained = rec.get("provenance", {}), trained_by(rec)
    added = rec.get("inception_provenance", {}).get("added_to_finished_cell", {})
    return {"family": rec["family"], "seed": rec["seed"], "folder": str(folder), "params": rec["params"],
            "train_tflops": rec["train_tflops"], "fid_fmnist_cnn": rec["fid"], "fid_n": rec["settings"]["n"],
            "fid_inception": rec["fid_inception"], "inception_n": rec["inception_n"],
            "trained_commit": trained.get("git_commit"), "trained_on": _on(trained),
            "inception_commit": added.get("git_commit", prov.get("git_commit")),
            "inception_on": _on(added or prov),
            "weights_sha256": rec["inception_provenance"].get("weights_sha256"),
            "protocol": rec["inception_provenance"].get("protocol")}


def markdown(rows: list[dict], floors: list[dict], command: str) -> str:
    out = ["# Inception FID beside the published Fashion-MNIST numbers", "",
           f"Made by `{command}` from the cells' own files.", "",
           "## zoo", "",
           "TF-Inception FID (pool3, 2048-d) of 10,000 samples against the 10,000 test images, with the "
           "fmnist-cnn FID of the same cell (its first 5,000 samples against the first 5,000 test images) "
           "beside it. One training run per family, seed 0. Lower is better.", "",
           "| family | params | train TFLOP | FID (Inception, n = 10,000) | FID (fmnist-cnn, n = 5,000) |",
           "|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r["fid_inception"]):
        out.append(f"| {r['family']} | {r['params']:,} | {r['train_tflops']:.1f} | {r['fid_inception']:.2f} "
                   f"| {r['fid_fmnist_cnn']:.2f} |")
    for f in floors:
        out.append(f"| floor: {f['inception_n']:,} train images | | | {f['fid']:.2f} | |")
    out += ["", "The floor is the FID of real train images against the test images at the same n: no model "
            "can be expected to score below it under this protocol.", "",
            "Provenance of each row (training, then the Inception FID):", "",
            "| family | folder | trained at | on | Inception FID at | on |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["family"]):
        out.append(f"| {r['family']} | `{r['folder']}` | `{(r['trained_commit'] or '?')[:7]}` | {r['trained_on']} "
                   f"| `{(r['inception_commit'] or '?')[:7]}` | {r['inception_on']} |")
    sha = sorted({r["weights_sha256"] for r in rows if r["weights_sha256"]})
    out += ["", f"Inception weights (sha256): {', '.join(f'`{s}`' for s in sha) or 'unrecorded'}.", "",
            "## Published", "", PUBLISHED_PROTOCOL, "",
            "| source | model | FID (Inception, n = 10,000) | what it is |", "|---|---|---:|---|"]
    for src, model, fid, spread, what in PUBLISHED:
        out.append(f"| {src} | {model} | {fid:.1f}" + (f" ± {spread:.1f}" if spread is not None else "")
                   + f" | {what} |")
    out += ["", "## What still differs between the two tables", ""] + [f"- {d}" for d in DIFFERENCES] + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="bench folders whose cells have the Inception FID")
    ap.add_argument("--out", type=Path, required=True, help="folder for INCEPTION.md and inception.json")
    a = ap.parse_args(argv)
    rows, floors = [], []
    for folder in a.folders:
        if not (folder / "cells").is_dir():
            print(f"error: {folder} is not a bench folder (no cells/)", file=sys.stderr)
            return 2
        cells, floor = read_cells(folder)
        rows += [row(c, folder) for c in cells]
        if floor is not None and all((f["fid"], f["inception_n"]) != (floor["fid"], floor["inception_n"])
                                     for f in floors):   # one row per distinct floor, not per folder
            floors.append(floor)
    if not rows:
        print("error: no cell with the Inception FID in " + ", ".join(map(str, a.folders)), file=sys.stderr)
        return 2
    command = "python benchmarks/inception_table.py " + " ".join(map(str, a.folders)) + f" --out {a.out}"
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "INCEPTION.md").write_text(markdown(rows, floors, command))
    doc = {"command": command, "rows": rows,
           "floors": [{"fid": f["fid"], "inception_n": f["inception_n"]} for f in floors],
           "published": [dict(zip(("source", "model", "fid", "spread", "what"), p)) for p in PUBLISHED],
           "published_protocol": PUBLISHED_PROTOCOL, "differences": DIFFERENCES}
    (a.out / "inception.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{len(rows)} cells -> {a.out / 'INCEPTION.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
