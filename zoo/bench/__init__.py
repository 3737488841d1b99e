"""`zoo bench`: every family on the same data under the same training FLOPs, over seeds.

For each (family, seed) cell: train under the profile's FLOP budget (resuming a killed cell
from its checkpoint), sample n images with fixed seeds (image i uses (seed=0, i) in every
cell, so grids are comparable), compute every metric against the same reference split,
bits/dim where the family has a likelihood, and sampling cost in a fresh subprocess.
Each finished cell is written atomically to ``cells/<family>-s<seed>.json`` with the settings
that made it, and reused only by a run with the same settings; the tables and figures are
rebuilt from the cell files after every cell.

Modules: ``profiles`` (the profiles and checks on overrides), ``settings`` (what made a cell,
provenance), ``store`` (cell files), ``rundir`` (a cell's run folder and what may be deleted
there), ``cell`` (one cell), ``runner`` (the driver), ``tables`` (aggregation and markdown),
``outputs`` (results.json/csv, RESULTS.md), ``figures``, ``collapse`` (the mode-collapse check).
"""
from __future__ import annotations

from .cell import run_cell
from .outputs import write_outputs
from .profiles import PROFILES, SAMPLE_SEED, Profile, check_profile, parse_seeds, with_overrides
from .runner import run_bench
from .tables import aggregate, mean_std, results_table, seed_table, winners, winners_table

__all__ = ["PROFILES", "SAMPLE_SEED", "Profile", "aggregate", "check_profile", "mean_std", "parse_seeds",
           "results_table", "run_bench", "run_cell", "seed_table", "winners", "winners_table", "with_overrides",
           "write_outputs"]
