"""`zoo bench report`: a static HTML site (leaderboard, family pages) for a results folder."""
from __future__ import annotations

from pathlib import Path

import click

from .common import CONTEXT


@click.command("report", context_settings=CONTEXT)
@click.argument("results")
@click.option("--out", required=True, metavar="DIR",
              help="Folder for the site (made if needed; an earlier site's files there are overwritten).")
def report_cmd(results, out):
    """Write a static HTML site for RESULTS (a `zoo bench` output folder, or a scaling one) into DIR.

    The site needs no server and no network: open DIR/index.html in a browser. index.html is the
    leaderboard, one row per family with mean ± std over seeds (click a column header to sort by it,
    again to reverse), the floor and ceiling rows apart, what each column measures, the figures,
    links to copies of results.json and results.csv, and the commits and machines that made the
    cells. Each family has a page (family-<name>.html) with its sample grid, interpolations, training
    and NFE curves, its per-seed rows and each cell's provenance and settings. For a scaling folder the
    index shows the scaling figure and per-budget tables, and each budget gets a site in DIR/<T>tf/.

    \b
    Example:
      zoo bench report results/standard --out results/standard/site
    """
    from ..bench.report import write_report
    index = write_report(Path(results), Path(out))
    click.echo(str(index))
