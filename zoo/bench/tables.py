"""Aggregation and markdown tables: mean and sample std over seeds, number formatting, the main
results table, the best family per column, the NFE sweep, and per-seed rows of chosen families."""
from __future__ import annotations

import math

METRIC_COLS = ["fid", "kid_mean", "precision", "recall", "density", "coverage", "classifier_score", "min_class_share",
               "memorization"]
# conditional cells (zoo bench --conditional): samples prompted by the test split's captions
COND_COLS = ["fid_uncond", "clip_score", "prompt_acc", "class_acc", "attr_acc", "fid_class_mean", "fid_class_max"]
ROW_COLS = METRIC_COLS + COND_COLS + ["bpd", "bpd_sem", "params", "train_tflops", "steps", "epochs", "train_wall_s", "images_per_s",
                          "latency_s", "nfe", "peak_mem_mb"]
# columns of zoo bench --inception: in the tables only when some cell has a value
INCEPTION_COLS = ["fid_inception"]
INCEPTION_LABEL = "FID (Inception)"
INCEPTION_DEFINITION = ("Fréchet distance between Gaussians fitted to the TF-Inception (2015-12-05) pool3 "
                        "features of the samples and of the test images, the features of published Fashion-MNIST "
                        "FIDs: 10,000 samples against the 10,000 test images (the cells' inception_n); its floor "
                        "row is as many train images against the same test images.")

# (column, label, direction): +1 higher is better, -1 lower is better. Memorization has no better side.
WINNER_COLS = [("fid", "FID", -1), ("fid_inception", INCEPTION_LABEL, -1), ("kid_mean", "KID", -1), ("precision", "precision", 1), ("recall", "recall", 1),
               ("density", "density", 1), ("coverage", "coverage", 1), ("classifier_score", "classifier score", 1),
               ("min_class_share", "smallest class share", 1), ("clip_score", "CLIP score", 1),
               ("prompt_acc", "prompt accuracy", 1), ("bpd", "bits/dim", -1),
               ("images_per_s", "images/s @256", 1), ("latency_s", "latency b=1 (s)", -1),
               ("nfe", "NFE", -1), ("peak_mem_mb", "peak sampling memory (MB)", -1)]

# per-seed table of `zoo bench table`: (key, header, format spec; "k" = KID x 1e3)
SEED_COLS = [("fid", "FID", ".2f"), ("kid_mean", "KID×1e3", "k"), ("precision", "precision", ".3f"),
             ("recall", "recall", ".3f"), ("density", "density", ".3f"), ("coverage", "coverage", ".3f"),
             ("classifier_score", "class. score", ".2f"), ("min_class_share", "min class share", ".3f"),
             ("bpd", "bits/dim", ".3f"), ("steps", "steps", ".0f"),
             ("epochs", "epochs", ".2f"), ("train_wall_s", "train wall (s)", ".0f"),
             ("images_per_s", "images/s @256", ".0f")]


# ---- numbers ------------------------------------------------------------------------------
def mean_std(vals: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std of the values that are not None or NaN; std is None for a single value
    (no spread from one seed: shown without '±'), both None for none."""
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return m, s


def fmt(m: float | None, s: float | None, digits: int = 2) -> str:
    """'m ± s' with ``digits`` decimals, 'm' without a spread, '—' without a value."""
    if m is None:
        return "—"
    if s is None or len(str(s)) == 0:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def fmt_sig(v: float | None, sig: int = 3) -> str:
    """``v`` to ``sig`` significant digits, '—' without a value."""
    return "—" if v is None else f"{v:.{sig}g}"


def fmt_spec(v, spec: str) -> str:
    """``v`` with a format spec ('k': KID shown x 1e3 with 2 decimals), '—' for None or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v * 1e3:.2f}" if spec == "k" else format(v, spec)


def fmt_mean_std(vals: list[float | None]) -> str:
    """The bench's own aggregate of a list of per-seed values, formatted: 'm ± s' or 'm'."""
    return fmt(*mean_std(vals))


# ---- aggregation --------------------------------------------------------------------------
def optional_cols(records: list[dict]) -> list[str]:
    """The columns of ``INCEPTION_COLS`` that some cell or row of ``records`` has a value for."""
    return [k for k in INCEPTION_COLS if any(r.get(k) is not None for r in records)]


def aggregate(cells: list[dict]) -> list[dict]:
    """One row per family: mean and sample std over seeds of every numeric column (the optional
    columns only where some cell has them)."""
    cols = ROW_COLS + optional_cols(cells)
    by: dict[str, list[dict]] = {}
    for c in cells:
        by.setdefault(c["family"], []).append(c)
    rows = []
    for fam, cs in sorted(by.items()):
        row = {"family": fam, "seeds": sorted(c["seed"] for c in cs), "likelihood": cs[0]["likelihood"]}
        for k in cols:
            row[k], row[k + "_std"] = mean_std([c.get(k) for c in cs])
        rows.append(row)
    return rows


def inside_seed_std(gap: float, *stds: float) -> bool:
    """The one rule for "inside the seed std", used by this module's winners and by the scaling
    table: a gap is inside when it is smaller than the larger of the compared rows' seed stds."""
    return gap < max(stds)


def winners(rows: list[dict]) -> list[dict]:
    """Per column: the best family by its seed mean (all of them on a tie), the runner-up (the best
    value behind it), the margin, and whether the margin is inside the seed spread (smaller than the
    larger of the two seed stds)."""
    out = []
    for key, label, sign in WINNER_COLS:
        ranked = sorted((r for r in rows if r.get(key) is not None), key=lambda r: -sign * r[key])
        if len(ranked) < 2:
            continue
        best = [r for r in ranked if r[key] == ranked[0][key]]
        rest = ranked[len(best):]
        a = best[0]
        rec = {"column": label, "key": key, "winner": ", ".join(r["family"] for r in best), "value": a[key],
               "tie": len(best) > 1, "runner_up": None, "runner_up_value": None, "margin": None,
               "margin_rel": None, "within_seed_spread": None}
        if rest:
            b = rest[0]
            gap = abs(a[key] - b[key])
            stds = [r.get(key + "_std") for r in best + [b]]
            rec.update(runner_up=b["family"], runner_up_value=b[key], margin=gap,
                       margin_rel=gap / abs(b[key]) if b[key] else None,
                       # a row without a std counts as 0; with none at all (one seed each) there is no spread
                       # to judge the margin by
                       within_seed_spread=(inside_seed_std(gap, *(v or 0.0 for v in stds))
                                           if any(v is not None for v in stds) else None))
        out.append(rec)
    return out


# ---- markdown -----------------------------------------------------------------------------
def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def results_row(r: dict) -> list[str]:
    """The main table's cells for one aggregated family row."""
    se = f", SE {r['bpd_sem']:.3f}" if r.get("bpd_sem") is not None else ""
    bpd = "—" if r["bpd"] is None else f"{fmt(r['bpd'], r['bpd_std'], 3)} ({r['likelihood']}{se})"
    kid_std = r["kid_mean_std"] * 1e3 if r["kid_mean_std"] is not None else None
    kid = fmt(r["kid_mean"] * 1e3, kid_std, 2) if r["kid_mean"] is not None else "—"
    return [r["family"], ",".join(map(str, r["seeds"])), fmt(r["fid"], r["fid_std"]), kid,
            fmt(r["precision"], r["precision_std"], 3), fmt(r["recall"], r["recall_std"], 3),
            fmt(r["density"], r["density_std"], 3), fmt(r["coverage"], r["coverage_std"], 3),
            fmt(r["classifier_score"], r["classifier_score_std"]),
            fmt(r["min_class_share"], r["min_class_share_std"], 3),
            fmt(r["memorization"], r["memorization_std"], 3), bpd, f"{int(r['params']):,}",
            f"{r['train_tflops']:.2f}", f"{r['steps']:.0f}", f"{r['epochs']:.2f}",
            fmt(r["train_wall_s"], r["train_wall_s_std"], 0), fmt(r["images_per_s"], r["images_per_s_std"], 1),
            fmt_sig(r["latency_s"]), f"{r['nfe']:.0f}", f"{r['peak_mem_mb']:.0f}"]


def reference_row(label: str, ref: dict) -> list[str]:
    """The main table's cells for the floor or ceiling row (metrics only)."""
    kid = f"{ref['kid_mean'] * 1e3:.2f}" if ref.get("kid_mean") is not None else "—"
    return [label, "—", fmt(ref.get("fid"), None), kid] + [
        fmt(ref.get(k), None, 3) for k in ("precision", "recall", "density", "coverage")] + [
        fmt(ref.get("classifier_score"), None), fmt(ref.get("min_class_share"), None, 3),
        fmt(ref.get("memorization"), None, 3)] + ["—"] * 10


def results_table(rows: list[dict], floor: dict | None, ceiling: dict | None, features: str = "fmnist-cnn") -> str:
    """The main markdown table: one row per family (mean ± std over seeds), then floor and ceiling.
    The feature-space columns name their ``features`` (these are not Inception FIDs by default); the
    Inception FID of zoo bench --inception follows the FID where some row has it."""
    f = f" ({features})"
    head = ["family", "seeds", f"FID{f} ↓", f"KID×1e3{f} ↓", "precision ↑", "recall ↑", "density ↑", "coverage ↑",
            "class. score ↑", "min class share ↑", "memorization", "bits/dim ↓", "params", "train TFLOP", "steps", "epochs",
            "train wall (s)", "images/s @256 ↑", "latency b=1 (s) ↓", "NFE", "peak mem (MB)"]
    inception = bool(optional_cols(rows))

    def line(cells: list[str], r: dict | None) -> str:
        if inception:
            cells.insert(3, f"{INCEPTION_LABEL} ↓" if r is None else fmt(r.get("fid_inception"), r.get("fid_inception_std")))
        return _line(cells)
    lines = [line(head, None), "|" + "---|" * (len(head) + inception)]
    lines += [line(results_row(r), r) for r in rows]
    for label, ref in (("floor: real vs real", floor), ("ceiling: uniform noise", ceiling)):
        if ref:
            lines.append(line(reference_row(label, ref), ref))
    return "\n".join(lines)


def conditional_table(rows: list[dict], encoder: str, guidance: float) -> str | None:
    """Markdown table of the conditional columns (mean ± std over seeds); None without conditional cells."""
    rows = [r for r in rows if r.get("clip_score") is not None]
    if not rows:
        return None
    head = ["family", "seeds", "FID prompted ↓", "FID unconditional ↓", "CLIP score ↑", "prompt acc. ↑",
            "class acc. ↑", "attribute acc. ↑", "per-class FID mean ↓", "per-class FID max ↓"]
    lines = [f"Text encoder `{encoder}`; guidance {guidance:g} for the families that have it (diffusion, latent "
             "diffusion, pixel GPT, VQ-VAE), 1 for the others.", "", _line(head), "|" + "---|" * len(head)]
    for r in rows:
        lines.append(_line([r["family"], ",".join(map(str, r["seeds"])), fmt(r["fid"], r["fid_std"]),
                            fmt(r["fid_uncond"], r["fid_uncond_std"]), fmt(r["clip_score"], r["clip_score_std"]),
                            fmt(r["prompt_acc"], r["prompt_acc_std"], 3), fmt(r["class_acc"], r["class_acc_std"], 3),
                            fmt(r["attr_acc"], r["attr_acc_std"], 3), fmt(r["fid_class_mean"], r["fid_class_mean_std"]),
                            fmt(r["fid_class_max"], r["fid_class_max_std"])]))
    return "\n".join(lines)


def _spread_word(inside: bool | None) -> str:
    return "— (one seed)" if inside is None else ("yes" if inside else "no")


def winners_table(ws: list[dict]) -> str:
    """Markdown table of :func:`winners`."""
    lines = ["| column | winner | value | runner-up | value | margin | margin inside seed std? |",
             "|---|---|---|---|---|---|---|"]
    for w in ws:
        win = w["winner"] + (" (tie)" if w["tie"] else "")
        if w["runner_up"] is None:
            lines.append(f"| {w['column']} | {win} | {w['value']:.4g} | — | — | — | — |")
            continue
        rel = f" ({100 * w['margin_rel']:.0f}%)" if w["margin_rel"] is not None else ""
        lines.append(f"| {w['column']} | {win} | {w['value']:.4g} | {w['runner_up']} | "
                     f"{w['runner_up_value']:.4g} | {w['margin']:.3g}{rel} | {_spread_word(w['within_seed_spread'])} |")
    return "\n".join(lines)


def sweep_table(cells: list[dict]) -> str | None:
    """Markdown table of every cell's NFE sweep (steps, NFE, FID, images/s); None without sweeps."""
    sweeps = [(c["family"], c["seed"], s) for c in cells for s in c.get("sweep", [])]
    if not sweeps:
        return None
    lines = ["| family | seed | steps | NFE | FID | images/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {f} | {sd} | {s['steps']} | {s['nfe']} | {s['fid']:.2f} | {s['images_per_s']:.1f} |"
              for f, sd, s in sweeps]
    return "\n".join(lines)


def seed_table(doc: dict, families: list[str], source: str, *, sweep: bool = False) -> str:
    """Per-seed rows of ``families`` from a results.json document ``doc`` (read from ``source``),
    the FID mean ± std per family, and with ``sweep`` the FID-against-NFE rows: `zoo bench table`."""
    cells = [c for c in doc["cells"] if c["family"] in families]
    cells.sort(key=lambda c: (families.index(c["family"]), c["seed"]))
    prof = doc["profile"]
    out = [f"From `{source}` (profile {prof['name']}, {prof['tflops']:g} TFLOP per cell, n={prof['n']:,}).", "",
           "| family | seed | " + " | ".join(h for _, h, _ in SEED_COLS) + " |",
           "|---|---|" + "---|" * len(SEED_COLS)]
    out += [f"| {c['family']} | {c['seed']} | " + " | ".join(fmt_spec(c.get(k), f) for k, _, f in SEED_COLS) + " |"
            for c in cells]
    for fam in families:
        fids = [c["fid"] for c in cells if c["family"] == fam]
        if fids:
            out += ["", f"{fam}: FID mean ± std over {len(fids)} seeds = {fmt_mean_std(fids)}"]
    if sweep:
        out += ["", "| family | seed | NFE | FID | images/s (whole sample, incl. batching) | n |",
                "|---|---|---|---|---|---|"]
        out += [f"| {c['family']} | {c['seed']} | {s['nfe']} | {s['fid']:.2f} | {s['images_per_s']:.1f} | {s['n']} |"
                for c in cells for s in c.get("sweep", [])]
        for fam in families:
            by: dict[int, list[float]] = {}
            for c in cells:
                if c["family"] == fam:
                    for s in c.get("sweep", []):
                        by.setdefault(s["nfe"], []).append(s["fid"])
            out += [f"{fam}: NFE {nfe}: FID {fmt_mean_std(v)}" for nfe, v in sorted(by.items())]
    return "\n".join(out)
