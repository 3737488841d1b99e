"""Registry, configs, save/load safety, per-sample RNG and the image conversion."""
import dataclasses
import json

import pytest
import torch

import zoo
from zoo import ZooError, rng
from zoo.api import Generator, ModelConfig, register_model
from zoo.config import apply_overrides, from_dict, parse_sets
from zoo.images import to_float, to_levels, to_uint8

from helpers import tiny


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        @register_model("vae")
        class Other(Generator):
            pass


def test_registry_rejects_non_generator_and_unknown():
    with pytest.raises(TypeError):
        register_model("bogus-x")(object)
    with pytest.raises(ZooError, match="unknown model 'nope'"):
        zoo.get_model("nope")
    assert "vae" in zoo.list_models()


def test_config_overrides_and_errors():
    cfg = zoo.get_model_class("vae").Config()
    c2 = apply_overrides(cfg, {"latent_dim": "16", "widths": "8,16,32", "lr": "1e-4"})
    assert c2.latent_dim == 16 and c2.widths == (8, 16, 32) and c2.lr == 1e-4
    with pytest.raises(ZooError, match="unknown key"):
        apply_overrides(cfg, {"nope": "1"})
    with pytest.raises(ZooError, match="expected an integer"):
        apply_overrides(cfg, {"latent_dim": "abc"})
    with pytest.raises(ZooError, match="expected an integer"):
        apply_overrides(cfg, {"latent_dim": "1.5"})
    with pytest.raises(ZooError, match="key=value"):
        parse_sets(["latent_dim"])
    with pytest.raises(ZooError, match="unknown config key"):
        from_dict(type(cfg), {"zzz": 1})
    assert from_dict(type(cfg), json.loads(json.dumps(dataclasses.asdict(c2)))) == c2


def test_image_conversion_roundtrip():
    u = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_float(u)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), u)
    assert torch.equal(to_levels(x), u.long())
    with pytest.raises(ValueError):
        to_float(u.float())


def test_per_sample_generators():
    a = rng.randn(rng.generators(3, 0, 10), 4)
    b = torch.cat([rng.randn(rng.generators(3, s, 1), 4) for s in range(10)])
    assert torch.equal(a, b)
    assert not torch.equal(a, rng.randn(rng.generators(4, 0, 10), 4))
    assert rng.sample_seed(0, 1) != rng.sample_seed(1, 0)
    probs = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    draws = torch.stack([rng.categorical(rng.generators(s, 0, 2), probs) for s in range(200)])
    assert (draws[:, 0] == 1).all()
    assert set(draws[:, 1].tolist()) == {0, 2}


def _write_run(tmp_path):
    m = tiny("vae")
    zoo.save(m, tmp_path)
    return m


def test_save_load_roundtrip(tmp_path):
    m = _write_run(tmp_path)
    m2 = zoo.load(tmp_path)
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    rec = json.loads((tmp_path / "config.json").read_text())
    assert rec["family"] == "vae" and rec["zoo_version"] == zoo.__version__


def test_load_device_and_bad_device(tmp_path):
    _write_run(tmp_path)
    m = zoo.load(tmp_path, device="cpu")
    assert m.device == torch.device("cpu") and not m.training
    with pytest.raises(ZooError, match="cannot move the model to device 'nonsense'"):
        zoo.load(tmp_path, device="nonsense")


@pytest.mark.parametrize("value,ok", [(10, True), (0, True), (3, False)])
def test_config_with_the_removed_num_classes_field(tmp_path, value, ok):
    """Run folders written before ``num_classes`` left ModelConfig carry it: its unused values read
    (the field is dropped), any other is refused in one line."""
    m = _write_run(tmp_path)
    rec = json.loads((tmp_path / "config.json").read_text())
    assert "num_classes" not in rec["config"]
    rec["config"]["num_classes"] = value
    (tmp_path / "config.json").write_text(json.dumps(rec))
    if ok:
        assert zoo.load(tmp_path).config == m.config
    else:
        with pytest.raises(ZooError, match="'num_classes' is no longer supported"):
            zoo.load(tmp_path)


def test_an_old_cascade_base_config_with_num_classes_still_builds():
    """The cascade rebuilds its base from the base's saved config dict (and a resumed run its config
    from the checkpoint's record): those dicts go through the same reading as config.json."""
    from zoo.config import to_dict
    cascade = zoo.get_model_class("cascade")
    built = zoo.get_model("cascade", cascade.tiny_config())
    old = to_dict(built.config)
    old["base_config"] = {**old["base_config"], "num_classes": 10}
    again = zoo.get_model("cascade", old)
    assert to_dict(again.config)["base_config"] == to_dict(built.config)["base_config"]


def test_zoo_list_counts_the_parameters_the_bench_reports():
    """`zoo list` (installed command) and a bench cell build each family the same way (its recipe for
    the budget) and count it with ``Generator.num_params``: the same number for every family."""
    import subprocess
    import sys
    from pathlib import Path
    from zoo.api import build_model, split_recipe
    from zoo.bench.settings import recipe
    r = subprocess.run([str(Path(sys.executable).parent / "zoo"), "list", "--json", "--tflops", "10"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    listed = {row["family"]: row["params"] for row in json.loads(r.stdout)}
    assert set(listed) == set(zoo.list_models())
    for family, params in listed.items():
        model_sets, _ = split_recipe(recipe(family, 10.0, tiny=False))     # as bench/cell.py builds a cell
        assert build_model(family, (1, 28, 28), model_sets).num_params() == params, family
    assert listed["vae"] > zoo.get_model("vae").num_params()               # the mixture prior is counted


@pytest.mark.parametrize("key, value, message", [("family", "os.system", "unknown model"),
                                                 ("zoo_version", "99.0.0", "newer than this zoo")])
def test_load_rejects_an_unknown_family_or_a_newer_version(tmp_path, key, value, message):
    _write_run(tmp_path)
    rec = json.loads((tmp_path / "config.json").read_text())
    rec[key] = value
    (tmp_path / "config.json").write_text(json.dumps(rec))
    with pytest.raises(ZooError, match=message):
        zoo.load(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "header"])
def test_load_rejects_corrupt_weights(tmp_path, damage):
    _write_run(tmp_path)
    p = tmp_path / "model.safetensors"
    raw = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        p.write_bytes(b"\x80\x04\x95" + b"not a safetensors file" * 10)  # a pickle opcode prefix
    elif damage == "empty":
        p.write_bytes(b"")
    else:
        p.write_bytes(raw[:8] + b"{" * 50 + raw[58:])
    with pytest.raises(ZooError, match="cannot load weights"):
        zoo.load(tmp_path)


def test_load_rejects_weights_of_another_shape(tmp_path):
    _write_run(tmp_path)
    rec = json.loads((tmp_path / "config.json").read_text())
    rec["config"]["latent_dim"] = 5
    (tmp_path / "config.json").write_text(json.dumps(rec))
    with pytest.raises(ZooError, match="cannot load weights"):
        zoo.load(tmp_path)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(ZooError, match="not a run directory"):
        zoo.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ZooError, match="not valid JSON"):
        zoo.load(tmp_path)


def test_sample_argument_errors():
    m = tiny("vae")
    with pytest.raises(ZooError):
        m.sample(-1)
    with pytest.raises(ZooError):
        m.sample(2, batch_size=0)


def test_vae_iwae_bound_tightens_with_k():
    """The IWAE bound is non-decreasing in k in expectation; with many images it shows."""
    from helpers import data
    torch.manual_seed(0)
    m = tiny("vae").eval()
    x = to_float(data().images[:64])
    torch.manual_seed(1)
    lp1 = m.log_prob(x, k=1).mean()
    torch.manual_seed(1)
    lp64 = m.log_prob(x, k=64).mean()
    assert lp64 > lp1


def test_vae_interpolation_endpoints():
    from helpers import data
    m = tiny("vae").eval()
    a, b = data().images[0], data().images[1]
    strip = m.interpolate(a, b, steps=5)
    assert strip.shape == (5, 1, 28, 28) and strip.dtype == torch.uint8
    mu, _ = m.encode(to_float(torch.stack([a, b])))
    ends = to_uint8(m.decode(mu)[0].clamp(-1, 1))
    assert torch.equal(strip[0], ends[0]) and torch.equal(strip[-1], ends[1])


def test_git_commit_is_read_once_per_process(monkeypatch):
    """A long run names the commit it started with, not one made in the checkout while it ran."""
    import subprocess

    from zoo import provenance
    provenance.git_commit.cache_clear()
    first = provenance.git_commit()

    def moved_head(args, **kw):   # what git would answer after a commit made mid-run
        return subprocess.CompletedProcess(args, 0, stdout="f" * 40 + "\n" if "log" in args else "", stderr="")
    monkeypatch.setattr(provenance.subprocess, "run", moved_head)
    assert provenance.git_commit() == first
    provenance.git_commit.cache_clear()        # a new process would read the new commit
    assert provenance.git_commit() == "f" * 40
    provenance.git_commit.cache_clear()


def test_git_commit_names_the_last_commit_that_changed_the_code(tmp_path, monkeypatch):
    """Results committed after the code leave the recorded commit alone, so cells made on either side
    of them name one commit; an uncommitted code change marks it dirty."""
    import subprocess

    from zoo import provenance

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "a.py").write_text("x = 1\n")
    git("add", "."), git("commit", "-qm", "code")
    code = git("rev-parse", "HEAD")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text("{}\n")
    git("add", "."), git("commit", "-qm", "results")
    assert git("rev-parse", "HEAD") != code
    monkeypatch.setattr(provenance, "_ROOT", tmp_path)
    provenance.git_commit.cache_clear()
    try:
        assert provenance.git_commit() == code
        (tmp_path / "zoo" / "a.py").write_text("x = 2\n")
        provenance.git_commit.cache_clear()
        assert provenance.git_commit() == code + "+dirty"
    finally:
        provenance.git_commit.cache_clear()


def test_describe_machine_names_the_cpu_gpu_and_threads():
    from zoo.provenance import describe_machine
    assert describe_machine({"cpu": "AMD EPYC", "gpu": None, "threads": 1}) == "AMD EPYC, 1 thread"
    assert describe_machine({"cpu": "Xeon", "gpu": "H100", "threads": 2}) == "Xeon + H100, 2 threads"
    assert describe_machine({"cpu": "AMD EPYC", "cpu_id": "family 26, model 2, stepping 1", "gpu": None,
                             "threads": 1}) == "AMD EPYC (family 26, model 2, stepping 1), 1 thread"


def test_cpu_id_reads_family_model_and_stepping_of_the_first_processor(tmp_path):
    from zoo.provenance import cpu_id
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                    "model name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\n")
    assert cpu_id(info) == "family 26, model 2, stepping 1"
    info.write_text("processor\t: 0\nCPU implementer\t: 0x41\n")   # an ARM board: no family or model
    assert cpu_id(info) is None
    assert cpu_id(tmp_path / "missing") is None
