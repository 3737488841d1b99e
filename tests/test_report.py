"""`zoo bench report`: the static site of a results folder parses, every link and image in it resolves,
the leaderboard has one row per family, values are escaped, and the command's mistakes exit 2.

The sites are made from a tiny bench run here (conftest.py's fixture ``finished``), from the committed
quick and scaling folders (read only), and, opt-in, opened in headless Chromium."""
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from zoo.bench.report import write_report
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parent.parent
ZOO = str(Path(sys.executable).parent / "zoo")
VOID = {"meta", "img", "br", "hr", "link", "input"}
CHROMIUM = Path("/usr/bin/chromium")


class Page(HTMLParser):
    """Collects every href and src, the leaderboard's rows by tbody class, and checks that every
    non-void tag is closed in the order it was opened."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.stack_ids: list[str | None] = []
        self.links: list[str] = []
        self.imgs_without_alt = 0
        self.rows: dict[str, list[list[str]]] = {}
        self._tbody: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("href", "src") if a.get(k)]
        if tag == "img" and not a.get("alt"):
            self.imgs_without_alt += 1
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "tbody" and "leaderboard" in self.stack_ids:
            self._tbody = a.get("class")
        elif tag == "tr" and self._tbody:
            self.rows.setdefault(self._tbody, []).append([])
        elif tag == "td" and self._tbody:
            self._cell = []
        self.stack_ids.append(a.get("id"))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        self.stack_ids.pop()
        if tag == "tbody":
            self._tbody = None
        elif tag == "td" and self._cell is not None:
            self.rows[self._tbody][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def feed_all(self, text: str) -> "Page":
        self.feed(text)
        self.close()
        assert self.stack == [], f"unclosed tags {self.stack}"
        return self


def parse(path: Path) -> Page:
    return Page().feed_all(path.read_text(encoding="utf-8"))


def check_site(site: Path) -> dict[Path, Page]:
    """Parse every page of ``site``; every relative href/src must name a file inside the site, every
    image has alt text, and no link leaves for the network."""
    pages = {p: parse(p) for p in site.rglob("*.html")}
    assert pages
    root = site.resolve()
    for page, parsed in pages.items():
        assert parsed.imgs_without_alt == 0, page
        for link in parsed.links:
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc, f"{page}: {link} is not a relative link"
            if not parts.path:
                continue  # '#...' within the page
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: {link} does not resolve"
            assert root in target.parents, f"{page}: {link} leaves the site"
    return pages


def families_of(folder: Path) -> set[str]:
    return {c["family"] for c in json.loads((folder / "results.json").read_text())["cells"]}


def test_tiny_bench_site(finished, tmp_path):
    site = tmp_path / "site"
    index = write_report(finished, site)
    assert index == site / "index.html"
    pages = check_site(site)
    board = pages[index].rows
    fams = families_of(finished)
    assert sorted(r[0] for r in board["families"]) == sorted(fams)   # one row per family
    assert [r[0] for r in board["ref"]] == ["floor: real vs real", "ceiling: uniform noise"]
    for fam in fams:
        page = site / f"family-{fam}.html"
        assert page in pages
        text = page.read_text()
        assert f"{fam}-s0" in text and "samples-" in text   # per-seed row and the sample grid
        commit = json.loads((finished / "cells" / f"{fam}-s0.json").read_text())["provenance"]["git_commit"]
        assert commit in text
    assert (site / "data" / "results.json").read_bytes() == (finished / "results.json").read_bytes()


def test_quick_site_columns_and_sort_keys(tmp_path):
    site = tmp_path / "site"
    index = write_report(ROOT / "results" / "quick", site)
    pages = check_site(site)
    rows = pages[index].rows["families"]
    assert len(rows) == len(families_of(ROOT / "results" / "quick")) == 8
    html = index.read_text()
    # the sortable headers carry the record keys, the cells the unrounded means
    keys = re.findall(r'<th data-key="(\w+)"', html)
    assert keys[:2] == ["fid", "kid_mean"] and "bpd" in keys and "images_per_s" in keys
    doc = json.loads((ROOT / "results" / "quick" / "results.json").read_text())
    vae = next(r for r in doc["families"] if r["family"] == "vae")
    assert f'data-v="{vae["fid"]:.17g}"' in html
    assert html.count("<script>") == 1 and "http" not in html.split("<script>")[1]


def test_scaling_site_has_a_site_per_budget(tmp_path):
    site = tmp_path / "site"
    index = write_report(ROOT / "results" / "scaling", site)
    pages = check_site(site)
    doc = json.loads((ROOT / "results" / "scaling" / "scaling.json").read_text())
    budgets = sorted({p["tflops"] for p in doc["points"]})
    for b in budgets:   # the reused 10 TFLOP folder (results/standard) is found beside it
        assert site / f"{b:g}tf" / "index.html" in pages
    assert 'src="img/scaling.png"' in index.read_text()
    fid_table = pages[index].rows   # no leaderboard on the scaling index: the tables are per metric
    assert fid_table == {}
    assert "../img/scaling.png" in (site / "1tf" / "family-vae.html").read_text()


def test_values_are_escaped(tmp_path):
    src = tmp_path / "quick"
    shutil.copytree(ROOT / "results" / "quick", src)
    doc = json.loads((src / "results.json").read_text())
    doc["command"] = 'zoo bench <script>alert("x")</script> & more'
    (src / "results.json").write_text(json.dumps(doc))
    index = write_report(src, tmp_path / "site")
    text = index.read_text()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in text
    assert text.count("<script>") == 1
    check_site(tmp_path / "site")


def test_library_errors_write_nothing(tmp_path):
    with pytest.raises(ZooError, match="not a `zoo bench` results folder"):
        write_report(tmp_path, tmp_path / "site")
    with pytest.raises(ZooError, match="folder of its own"):
        write_report(ROOT / "results" / "quick", ROOT / "results" / "quick")
    assert not (tmp_path / "site").exists()


def run_zoo(*args):
    return subprocess.run([ZOO, *args], capture_output=True, text=True, timeout=300)


def test_cli_errors_exit_2_with_one_line(tmp_path):
    site = tmp_path / "site"
    r = run_zoo("bench", "report", str(tmp_path / "nothing"), "--out", str(site))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "not a `zoo bench`" in r.stderr
    (tmp_path / "notes").mkdir()
    r = run_zoo("bench", "report", str(tmp_path / "notes"), "--out", str(site))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    r = run_zoo("bench", "report", str(ROOT / "results" / "quick"), "--out", str(a_file))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: --out {a_file}: is a file, not a folder"]
    r = run_zoo("bench", "report", str(ROOT / "results" / "quick"), "--out", str(a_file / "site"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not site.exists() and a_file.read_text() == "x"


def test_cli_prints_the_index(tmp_path):
    r = run_zoo("bench", "report", str(ROOT / "results" / "quick"), "--out", str(tmp_path / "site"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(tmp_path / "site" / "index.html")
    assert "sort" in run_zoo("bench", "report", "--help").stdout


def _chromium(url: str, profile: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={profile}", *flags, url],
                          capture_output=True, text=True, timeout=120)


def _family_order(dom: str) -> list[str]:
    body = dom.split('<tbody class="families">')[1].split("</tbody>")[0]
    return re.findall(r'<tr><td><a href="family-[^"]+">([^<]+)</a>', body)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_chromium_renders_and_sorts(tmp_path):
    """Opens results/standard's leaderboard in headless Chromium (file://, no server), three times:
    as written, with '#sort=fid' and with '#sort=-fid'. The inline script turns the hash into a DOM
    click() on that column's header, the same handler a mouse click runs; --dump-dom prints the DOM
    after the script ran. It proves that Chromium builds the table with a row per family, that the
    click handler reorders the rows by the column's mean (ascending) and that a second click reverses
    them. It does not move a mouse (no hit-testing of the header). The screenshot of the sorted page
    is written to results/standard/site/screenshot.png where that site exists, else under tmp_path."""
    src = ROOT / "results" / "standard"
    site = tmp_path / "site"
    index = write_report(src, site)
    doc = json.loads((src / "results.json").read_text())
    by_fid = [r["family"] for r in sorted(doc["families"], key=lambda r: r["fid"])]
    plain = _family_order(_chromium(index.as_uri(), tmp_path / "p0", "--dump-dom").stdout)
    assert plain == sorted(by_fid)   # as written: by name
    asc = _chromium(index.as_uri() + "#sort=fid", tmp_path / "p1", "--dump-dom").stdout
    assert _family_order(asc) == by_fid
    assert 'data-key="fid" title="click to sort" aria-sort="ascending"' in asc
    desc = _chromium(index.as_uri() + "#sort=-fid", tmp_path / "p2", "--dump-dom").stdout
    assert _family_order(desc) == by_fid[::-1]
    committed = src / "site"
    shot = committed / "screenshot.png" if committed.is_dir() else tmp_path / "screenshot.png"
    url = (committed / "index.html" if committed.is_dir() else index).as_uri() + "#sort=fid"
    _chromium(url, tmp_path / "p3", "--window-size=1400,1000", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000
