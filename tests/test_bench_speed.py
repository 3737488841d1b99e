"""`zoo bench speed`: every family's sampling speed measured again from the architecture its cell
recorded (no run folder needed), written beside the tables, and used by the FID-against-images/s
figure."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.bench.outputs import rewrite_outputs
from zoo.bench.speed import measure_speeds, read_speeds
from zoo.errors import ZooError

from helpers import BENCH_FAMILIES

ZOO = str(Path(sys.executable).parent / "zoo")


@pytest.mark.slow   # heavy (30-50 s): opt in with --runslow
def test_speeds_come_from_the_recorded_architecture_without_run_folders(finished, tmp_path):
    out = tmp_path / "bench"
    shutil.copytree(finished, out)
    shutil.rmtree(out / "runs")   # a fresh clone has the cells, not the run folders
    doc = measure_speeds(out, "gan", min_time=0.1, command="cmd", log=lambda s: None)   # one family keeps it short
    assert rewrite_outputs(out)   # what `zoo bench speed` does next: the figures take these speeds
    cells = {c["family"]: c for c in json.loads((out / "results.json").read_text())["cells"]}
    assert [r["family"] for r in doc["rows"]] == ["gan"] and "gan" in BENCH_FAMILIES
    for r in doc["rows"]:
        # the rebuilt model is the cell's: the same parameters, network evaluations and FLOPs per image
        c = cells[r["family"]]
        assert r["params"] == c["params"] and r["nfe"] == c["nfe"]
        assert r["sample_flops_per_image"] == pytest.approx(c["sample_flops_per_image"], rel=1e-6)
        assert r["images_per_s"] > 0 and r["cell_images_per_s"] == c["images_per_s"]
    assert read_speeds(out)["rows"] == doc["rows"] and doc["matmul_gflops_before"] > 0
    md = (out / "SPEED.md").read_text()
    assert "| gan |" in md and "| vae |" not in md and "fp32 matmul" in md
    results = (out / "RESULTS.md").read_text()
    assert "takes its speeds from `SPEED.md`" in results and (out / "figures" / "pareto.png").exists()


def test_speed_refuses_a_folder_without_cells_or_an_unknown_family(finished, tmp_path):
    with pytest.raises(ZooError, match="has no bench cells"):
        measure_speeds(tmp_path, log=lambda s: None)
    with pytest.raises(ZooError, match="has no cells of flow"):
        measure_speeds(finished, "flow", log=lambda s: None)
    r = subprocess.run([ZOO, "bench", "speed", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "has no bench cells" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "speed.json").exists()
