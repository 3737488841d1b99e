"""A static HTML site for a results folder: `zoo bench report RESULTS --out DIR`.

Plain HTML with inline CSS and one small inline script (sorting), no server and no network: it opens
from the file system. For a bench folder (``results.json``, ``cells/``, ``figures/``) the site is

- ``index.html``: the leaderboard, one row per family (mean ± std over seeds; click a column header
  to sort the families by that column's mean, click again to reverse; ``index.html#sort=fid`` or
  ``#sort=-fid`` applies the same sort on load), the floor and ceiling rows apart, the column
  definitions, the figures of the whole folder, links to the data files and the provenance;
- ``family-<name>.html``: a family's sample grid, interpolation strip, training curves and NFE (or
  scaling) curves, its per-seed rows and each cell's provenance (commit, machine, settings);
- ``img/``: copies of the PNGs those pages show; ``data/``: copies of results.json, results.csv and
  RESULTS.md, so every link resolves offline wherever the site is put.

For a scaling folder (``scaling.json``) the index shows the scaling figure, the per-budget tables,
the fitted power laws and the crossings, and each budget's bench folder gets a site of its own in
``<T>tf/`` (the budget reused from another folder too, where that folder is found).

The leaderboard's columns, their labels, formats and better sides are those of the bench tables
(``tables.SEED_COLS`` and ``tables.WINNER_COLS``), so the site and RESULTS.md name a column alike.
"""
from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ZooError
from .figures import FIGURES_DIR
from .outputs import machine_of, machines_phrase
from .scaling import budget_folder
from .store import CorruptFile, cell_name, read_cells, read_floor, read_record, read_reference
from .tables import INCEPTION_DEFINITION, INCEPTION_LABEL, SEED_COLS, WINNER_COLS, aggregate, fmt, fmt_spec

IMG_DIR = "img"
DATA_DIR = "data"
INDEX = "index.html"
BENCH_FILES = ("results.json", "results.csv", "RESULTS.md")
SCALING_FILES = ("scaling.json", "SCALING.md")

# what each leaderboard column measures (its label, format and better side come from tables.py)
DEFINITIONS = {
    "fid": "Fréchet distance between Gaussians fitted to the features of the samples and of the test images.",
    "fid_inception": INCEPTION_DEFINITION,
    "kid_mean": "Kernel distance (unbiased MMD² with a cubic polynomial kernel, averaged over subsets) in the "
                "same features, shown × 1e3.",
    "precision": "Share of samples inside the k-nearest-neighbour balls of the test images' features (fidelity).",
    "recall": "Share of test images inside the k-nearest-neighbour balls of the samples' features (diversity).",
    "density": "Mean number of test-image neighbourhoods holding each sample, over k (about 1 for real data).",
    "coverage": "Share of test images whose neighbourhood holds at least one sample.",
    "classifier_score": "exp of the mean KL divergence between the fmnist-cnn classifier's class distribution "
                        "of each sample and their marginal (an Inception Score with the domain classifier).",
    "min_class_share": "Share of samples in the rarest class by the fmnist-cnn classifier (real data: 0.1 per "
                       "class; below 0.05 a class is half missing).",
    "memorization": "Median distance of the samples to their nearest training image over that of the test "
                    "images, in feature space (0: copies of the training set).",
    "bpd": "Bits per dimension of the test images: exact or an upper bound, as the family declares "
           "(— for a family without a likelihood).",
    "steps": "Optimizer steps the budget bought.",
    "epochs": "Passes over the training set.",
    "train_wall_s": "Training wall-clock, seconds.",
    "images_per_s": "Samples per second at batch 256, measured in a fresh process.",
    "latency_s": "Seconds to sample one image at batch 1.",
    "nfe": "Network evaluations per sample.",
    "peak_mem_mb": "Peak memory while sampling, MB.",
    "clip_score": "100 × max(cos, 0) between prompt and sample embeddings of the committed CLIP-style pair.",
    "prompt_acc": "Share of samples whose class and every attribute the prompt names match it.",
    "params": "Trainable parameters.",
}

CSS = """body{font:13px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1600px;padding:0 1em;color:#222}
.wide{overflow-x:auto}table{border-collapse:collapse;margin:.8em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}.wide td{white-space:nowrap}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}th[data-key]{cursor:pointer}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
tbody.ref td{background:#fafafa;font-style:italic}tbody.ref tr:first-child td{border-top:3px double #888}
img{max-width:100%;border:1px solid #ddd}figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
table.cells td{text-align:left}code{background:#f4f4f4;padding:0 3px}.prov{color:#555}dt{font-weight:600}dd{margin:0 0 .4em 1.5em}"""

# sorts the first tbody of #leaderboard by a header's column (numeric, on data-v; missing values last);
# a second click on the same header reverses; '#sort=KEY' or '#sort=-KEY' clicks that header on load
SCRIPT = """(function(){
var t=document.getElementById('leaderboard');if(!t)return;var body=t.tBodies[0];
function num(r,i){var v=parseFloat(r.cells[i].getAttribute('data-v'));return isNaN(v)?null:v;}
function sortBy(th){var i=th.cellIndex,d=th.getAttribute('aria-sort')==='ascending'?-1:1;
var rows=Array.prototype.slice.call(body.rows);rows.sort(function(a,b){var x=num(a,i),y=num(b,i);
if(x===null)return y===null?0:1;if(y===null)return -1;return d*(x-y);});
rows.forEach(function(r){body.appendChild(r);});
Array.prototype.forEach.call(t.querySelectorAll('th'),function(c){c.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',d>0?'ascending':'descending');}
Array.prototype.forEach.call(t.querySelectorAll('th[data-key]'),function(th){
th.addEventListener('click',function(){sortBy(th);});});
var m=/^#sort=(-?)(\\w+)$/.exec(location.hash);
if(m){var th=t.querySelector('th[data-key="'+m[2]+'"]');if(th){th.click();if(m[1])th.click();}}
})();"""


@dataclass(frozen=True)
class Column:
    """A leaderboard column: the record key, its header, a tables.fmt_spec format, its better side
    (+1 higher, -1 lower, 0 neither) and what it measures."""
    key: str
    label: str
    spec: str
    sign: int
    definition: str


def columns(features: str, rows: list[dict]) -> list[Column]:
    """The leaderboard's columns that some row has a value for: tables.SEED_COLS (labels and formats of
    `zoo bench table`), then the remaining columns of tables.WINNER_COLS, memorization and params."""
    signs = {k: s for k, _, s in WINNER_COLS}
    specs = [(k, label, spec) for k, label, spec in SEED_COLS]
    specs.insert(1, ("fid_inception", INCEPTION_LABEL, ".2f"))   # zoo bench --inception, beside the FID
    specs += [(k, label, ".3g") for k, label, _ in WINNER_COLS if k not in {c[0] for c in specs}]
    specs += [("memorization", "memorization", ".3f"), ("params", "params", ",.0f")]
    out = []
    for key, label, spec in specs:
        if not any(r.get(key) is not None for r in rows):
            continue
        if key in ("fid", "kid_mean"):
            label = f"{label} ({features})"
        out.append(Column(key, label, spec, signs.get(key, 0), DEFINITIONS.get(key, "")))
    return out


# ---- the results folder -------------------------------------------------------------------------------
def _json_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or not one."""
    try:
        return read_record(path, cell=False)
    except (OSError, CorruptFile):
        return None


def is_bench_folder(path: Path) -> bool:
    """Whether ``path`` is a `zoo bench` output folder: a results.json with cells and a profile."""
    doc = _json_object(path / "results.json") if path.is_dir() else None
    return bool(doc) and isinstance(doc.get("cells"), list) and "profile" in doc


def is_scaling_folder(path: Path) -> bool:
    """Whether ``path`` is a `zoo bench --profile scaling` output folder: a scaling.json with points."""
    doc = _json_object(path / "scaling.json") if path.is_dir() else None
    return bool(doc) and isinstance(doc.get("points"), list)


def check_report(results: Path, out: Path) -> None:
    """One-line ZooError unless ``results`` is a bench or scaling folder and ``out`` can be a folder
    of its own (not a file, not the results folder itself). Writes nothing."""
    if not (is_bench_folder(results) or is_scaling_folder(results)):
        raise ZooError(f"{results}: not a `zoo bench` results folder (no readable results.json or scaling.json)")
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out}: is a file, not a folder")
    anc = out.absolute()
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ZooError(f"--out {out}: {anc} is a file, not a folder")
    if out.resolve() == results.resolve():
        raise ZooError(f"--out {out}: give the site a folder of its own (e.g. {results / 'site'})")


def write_report(results: Path, out: Path) -> Path:
    """Write the static site of the bench or scaling folder ``results`` into ``out`` (made if needed;
    files of an earlier site there are overwritten) and return the path of its index.html.
    Raises a one-line ZooError, before writing anything, when ``results`` is not a results folder
    or ``out`` cannot be a folder."""
    results, out = Path(results), Path(out)
    check_report(results, out)
    if is_scaling_folder(results):
        return _scaling_site(results, out)
    return _bench_site(results, out)


# ---- html pieces --------------------------------------------------------------------------------------
def e(value) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value))


def _page(title: str, body: list[str], *, script: bool = False) -> str:
    tail = [f"<script>{SCRIPT}</script>"] if script else []
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      f"<title>{e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
                      *body, *tail, "</body>", "</html>"]) + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _copy(src: Path, site: Path, sub: str) -> str | None:
    """Copy ``src`` into ``site/sub/`` when it exists; its link relative to the site, else None."""
    if not src.is_file():
        return None
    (site / sub).mkdir(parents=True, exist_ok=True)
    if src.suffix != ".png" or not _save_gray(src, site / sub / src.name):
        shutil.copyfile(src, site / sub / src.name)
    return f"{sub}/{src.name}"


def _save_gray(src: Path, dst: Path) -> bool:
    """Save an RGB PNG whose three channels are equal (a grid of grayscale samples) as one gray
    channel: the same pixels in about half the bytes. False (nothing written) for any other image."""
    from PIL import Image, ImageChops
    with Image.open(src) as im:
        if im.mode != "RGB":
            return False
        r, g, b = im.split()
        if ImageChops.difference(r, g).getbbox() or ImageChops.difference(r, b).getbbox():
            return False
        r.save(dst, "PNG", optimize=True)
    return True


def _figure(src: str | None, alt: str, caption: str) -> list[str]:
    if src is None:
        return []
    return [f'<figure><img src="{e(src)}" alt="{e(alt)}"><figcaption>{e(caption)}</figcaption></figure>']


def _links(files: list[str]) -> str:
    return "Data: " + ", ".join(f'<a href="{e(f)}">{e(Path(f).name)}</a>' for f in files) + "."


def _td(m, s, spec: str) -> str:
    """A cell 'mean ± std' formatted by ``spec``, carrying the mean in data-v for sorting."""
    text, v = fmt_spec(m, spec), fmt_spec(m, ".17g")
    if s is not None and v != "—":
        text += f" ± {fmt_spec(s, spec)}"
    v = "" if v == "—" else v
    return f'<td data-v="{e(v)}">{e(text)}</td>'


def _head(cols: list[Column], first: list[str], *, sortable: bool) -> str:
    arrow = {1: " ↑", -1: " ↓", 0: ""}
    ths = [f"<th>{e(h)}</th>" for h in first]
    for c in cols:
        attrs = f' data-key="{e(c.key)}" title="click to sort"' if sortable else ""
        ths.append(f"<th{attrs}>{e(c.label + arrow[c.sign])}</th>")
    return "<thead><tr>" + "".join(ths) + "</tr></thead>"


# ---- a bench folder -----------------------------------------------------------------------------------
def _leaderboard(cols: list[Column], rows: list[dict], floor: dict | None, ceiling: dict | None) -> list[str]:
    """The families' rows (sortable), then the floor and ceiling rows in a tbody of their own."""
    body = []
    for r in rows:
        fam = f'<td><a href="{e(family_page(r["family"]))}">{e(r["family"])}</a></td>'
        body.append("<tr>" + fam + f"<td>{e(','.join(map(str, r['seeds'])))}</td><td>{e(r['likelihood'])}</td>"
                    + "".join(_td(r.get(c.key), r.get(c.key + "_std"), c.spec) for c in cols) + "</tr>")
    refs = []
    for label, ref in (("floor: real vs real", floor), ("ceiling: uniform noise", ceiling)):
        if ref:
            refs.append(f"<tr><td>{e(label)}</td><td>—</td><td>—</td>"
                        + "".join(_td(ref.get(c.key), None, c.spec) for c in cols) + "</tr>")
    out = ['<div class="wide">', '<table id="leaderboard">',
           _head(cols, ["family", "seeds", "likelihood"], sortable=True),
           '<tbody class="families">', *body, "</tbody>"]
    if refs:
        out += ['<tbody class="ref">', *refs, "</tbody>"]
    return out + ["</table>", "</div>"]


def _definitions(cols: list[Column]) -> list[str]:
    side = {1: "higher is better", -1: "lower is better", 0: "no better side"}
    out = ["<h2>Column definitions</h2>", "<p>Each family's value is the mean ± sample std over its seeds (one "
           "seed: no ±). Click a column header to sort the families by its mean; click again to reverse.</p>", "<dl>"]
    out += [f"<dt>{e(c.label)}</dt><dd>{e(c.definition)} ({e(side[c.sign])})</dd>" for c in cols]
    return out + ["</dl>"]


def family_page(family: str) -> str:
    """The file name of a family's page: 'family-vae.html'."""
    return f"family-{family}.html"


def _provenance_line(doc: dict, cells: list[dict]) -> str:
    commits = sorted({str(c.get("provenance", {}).get("git_commit", "unknown")) for c in cells})
    return (f'<p class="prov">Produced by <code>{e(doc.get("command", "?"))}</code>; cells trained and evaluated '
            f"at commit{'s' if len(commits) > 1 else ''} " + ", ".join(f"<code>{e(c)}</code>" for c in commits)
            + f" {e(machines_phrase(cells or [{'provenance': doc.get('provenance', {})}]))}.</p>")


def _bench_site(results: Path, out: Path, *, extra: dict[str, str] | None = None, up: str | None = None) -> Path:
    """The site of one bench folder; ``extra`` maps captions to images (relative to ``out``) that every
    family page also shows; ``up`` links a parent page."""
    doc = read_record(results / "results.json", cell=False)
    cells = read_cells(results)
    rows = aggregate(cells)
    features = (cells[0].get("metrics_provenance") or {}).get("extractor", "?") if cells else "?"
    cols = columns(features, rows)
    figs = results / FIGURES_DIR
    data = [f for f in (_copy(results / n, out, DATA_DIR) for n in BENCH_FILES) if f]
    shared = {"training curves (every cell)": _copy(figs / "training_curves.png", out, IMG_DIR),
              "FID against network evaluations": _copy(figs / "quality_vs_nfe.png", out, IMG_DIR)}
    prof = doc.get("profile", {})
    body = ([f'<p><a href="{e(up)}">up</a></p>'] if up else []) + [
        f"<h1>zoo bench — profile <code>{e(prof.get('name', '?'))}</code></h1>",
        f"<p>{e(prof.get('tflops', '?'))} TFLOP of training per cell, n={e(prof.get('n', '?'))} samples against "
        f"the test split, {len(cells)} cells of {len(rows)} families.</p>",
        *_leaderboard(cols, rows, read_floor(results), read_reference(results, "_ceiling")),
        *_definitions(cols), "<h2>Figures</h2>",
        *_figure(_copy(figs / "pareto.png", out, IMG_DIR), "FID against sampling throughput, one point per family",
                 "FID against sampling throughput"),
        *[f for cap, src in shared.items() for f in _figure(src, cap, cap)],
        f"<p>{_links(data)}</p>", _provenance_line(doc, cells)]
    index = out / INDEX
    _write(index, _page(f"zoo bench — {prof.get('name', '?')}", body, script=True))
    for r in rows:
        own = {"sample grid (lowest seed)": _copy(figs / f"samples-{r['family']}.png", out, IMG_DIR),
               "interpolation strip (lowest seed)": _copy(figs / f"interpolation-{r['family']}.png", out, IMG_DIR)}
        if not any(c.get("sweep") for c in cells if c["family"] == r["family"]):
            own_shared = {k: v for k, v in shared.items() if not k.startswith("FID against")}
        else:
            own_shared = shared
        fam_cells = [c for c in cells if c["family"] == r["family"]]
        _write(out / family_page(r["family"]), _family_html(r["family"], fam_cells, cols,
                                                            {**own, **own_shared, **(extra or {})}))
    return index


def _family_html(family: str, cells: list[dict], cols: list[Column], figures: dict[str, str | None]) -> str:
    """A family's page: figures, per-seed rows, each cell's provenance and settings."""
    rows = [f"<tr><td>{e(cell_name(c['family'], c['seed']))}</td>"
            + "".join(_td(c.get(k.key), None, k.spec) for k in cols) + "</tr>" for c in cells]
    body = [f'<p><a href="{INDEX}">leaderboard</a></p>', f"<h1>{e(family)}</h1>", "<h2>Figures</h2>"]
    body += [f for cap, src in figures.items() for f in _figure(src, f"{family}: {cap}", cap)]
    body += ["<h2>Per-seed rows</h2>", '<div class="wide">', "<table>", _head(cols, ["cell"], sortable=False),
             "<tbody>", *rows, "</tbody>", "</table>", "</div>", "<h2>Provenance of each cell</h2>", '<table class="cells">',
             "<thead><tr><th>cell</th><th>commit</th><th>machine</th><th>torch</th><th>zoo</th><th>date</th>"
             "<th>settings</th></tr></thead>", "<tbody>"]
    for c in cells:
        p = c.get("provenance", {})
        machine, torch_version = machine_of(c)
        settings = " ".join(f"<code>{e(k)}={e(json.dumps(v))}</code>" for k, v in (c.get("settings") or {}).items())
        body.append(f"<tr><td>{e(cell_name(c['family'], c['seed']))}</td><td><code>{e(p.get('git_commit', '?'))}"
                    f"</code></td><td>{e(machine)}</td><td>{e(torch_version)}</td><td>{e(p.get('zoo_version', '?'))}"
                    f"</td><td>{e(p.get('date', '?'))}</td><td>{settings}</td></tr>")
    body += ["</tbody>", "</table>"]
    return _page(f"zoo bench — {family}", body)


# ---- a scaling folder ---------------------------------------------------------------------------------
def _budget_source(results: Path, folder: str) -> Path | None:
    """The bench folder a scaling point was read from: by its name inside ``results`` (a budget's
    folder), as recorded (relative to where the bench ran), or by its name beside ``results`` (a
    reused folder); None if none is a bench folder."""
    p = Path(folder)
    for cand in (results / p.name, p, results.parent / p.name):
        if is_bench_folder(cand):
            return cand
    return None


def _scaling_tables(points: list[dict], budgets: list[float], subsites: dict[float, str]) -> list[str]:
    """Per metric, a table of family × budget (mean ± std over seeds); family names link to the
    family's page in the site of the first budget that has one."""
    at = {(p["family"], p["tflops"]): p for p in points}
    fams = sorted({p["family"] for p in points})
    out = []
    for key, label, spec in (("fid", "FID", ".2f"), ("coverage", "coverage", ".3f"), ("bpd", "bits/dim", ".3f"),
                             ("min_class_share", "smallest class share", ".3f")):
        if not any(p.get(key) is not None for p in points):
            continue
        out += [f"<h2>{e(label)} against training TFLOP</h2>", "<table>", "<thead><tr><th>family</th>"
                + "".join(f'<th><a href="{e(subsites[b] + "/" + INDEX)}">{e(f"{b:g}")} TFLOP</a></th>'
                          if b in subsites else f"<th>{e(f'{b:g}')} TFLOP</th>" for b in budgets)
                + "</tr></thead>", "<tbody>"]
        for fam in fams:
            site = next((subsites[b] for b in budgets if b in subsites and (fam, b) in at), None)
            name = f'<a href="{e(site + "/" + family_page(fam))}">{e(fam)}</a>' if site else e(fam)
            out.append(f"<tr><td>{name}</td>" + "".join(
                _td(at[(fam, b)].get(key), at[(fam, b)].get(key + "_std"), spec) if (fam, b) in at else "<td>—</td>"
                for b in budgets) + "</tr>")
        out += ["</tbody>", "</table>"]
    return out


def _fits_table(fits: dict) -> list[str]:
    out = ["<h2>Fitted power law: FID − floor ≈ a · C^(−b), C in TFLOP</h2>", "<table>",
           "<thead><tr><th>family</th><th>b</th><th>SE of b</th><th>a</th><th>R²</th><th>points</th></tr></thead>",
           "<tbody>"]
    for fam, f in sorted(fits.items()):
        f = f or {}
        out.append(f"<tr><td>{e(fam)}</td>" + "".join(
            f"<td>{e(fmt(f.get(k), None, d) if f.get(k) is not None else '—')}</td>"
            for k, d in (("b", 3), ("b_se", 3), ("a", 2), ("r2", 3))) + f"<td>{e(f.get('points', '—'))}</td></tr>")
    return out + ["</tbody>", "</table>"]


def _scaling_site(results: Path, out: Path) -> Path:
    """The scaling index (figure, per-budget tables, fits, crossings) and one bench site per budget."""
    doc = read_record(results / "scaling.json", cell=False)
    points = doc["points"]
    budgets = sorted({float(p["tflops"]) for p in points})
    fig = _copy(results / FIGURES_DIR / "scaling.png", out, IMG_DIR)
    subsites: dict[float, str] = {}
    for b in budgets:
        folder = next((p["folder"] for p in points if float(p["tflops"]) == b), "")
        src = _budget_source(results, folder)
        if src is not None:
            name = budget_folder(Path(), b).name
            extra = {"scaling curves (every family)": f"../{fig}"} if fig else None
            _bench_site(src, out / name, extra=extra, up=f"../{INDEX}")
            subsites[b] = name
    data = [f for f in (_copy(results / n, out, DATA_DIR) for n in SCALING_FILES) if f]
    prof = doc.get("profile", {})
    body = [f"<h1>zoo bench — profile <code>{e(prof.get('name', '?'))}</code></h1>",
            f"<p>Every family at {e(', '.join(f'{b:g}' for b in budgets))} TFLOP of training. Each budget has a site "
            "of its own (leaderboard, family pages, provenance of every cell): "
            + ", ".join(f'<a href="{e(s + "/" + INDEX)}">{e(f"{b:g}")} TFLOP</a>' for b, s in subsites.items())
            + ".</p>",
            *_figure(fig, "FID, coverage and bits/dim against training TFLOP, one line per family",
                     "quality against training compute"),
            *_scaling_tables(points, budgets, subsites), *_fits_table(doc.get("fits") or {}),
            "<h2>Where lines cross</h2>", "<ul>", *[f"<li>{e(c)}</li>" for c in doc.get("crossings", [])], "</ul>",
            f"<p>{_links(data)}</p>",
            f'<p class="prov">Produced by <code>{e(doc.get("command", "?"))}</code>'
            + (f"; the reused budget's cells are those of <code>{e(doc['reuse'])}</code>" if doc.get("reuse") else "")
            + ". Each budget's site names the commits and machines of its cells.</p>"]
    index = out / INDEX
    _write(index, _page("zoo bench — scaling", body, script=False))
    return index
