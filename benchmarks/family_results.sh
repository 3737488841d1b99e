#!/usr/bin/env bash
# The per-family figures of issues 3-7, from the 10 TFLOP runs that `zoo bench --profile standard`
# leaves in results/standard/runs/<family>-s<seed>. Runs one measurement at a time. Each step writes
# under results/ and is skipped when its output exists, so an interrupted run picks up where it
# stopped. A step whose run folder is missing is skipped with a note (exit 2 at the end), so the
# script can be run again as runs arrive. The timings (speed tables) come last: run them with
# nothing else on the machine (timings on a 2-core machine are meaningless when jobs overlap), or
# leave them out with TIMINGS=0 while other jobs run.
#
#   bash benchmarks/family_results.sh [RUNS_DIR]     # default results/standard/runs
#   TIMINGS=0 bash benchmarks/family_results.sh      # everything but the speed tables
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-results/standard/runs}
BENCH=$(dirname "$RUNS")          # the `zoo bench` folder: cells/ (records) beside runs/ (trained runs)
TIMINGS=${TIMINGS:-1}
PY=.venv/bin/python
ZOO=.venv/bin/zoo
SAMPLES=runs/diffusion-samples   # .npz samples for the NFE study (large, not committed)
MISSING=""

step() {  # step OUTPUT COMMAND...: run COMMAND unless OUTPUT exists; stdout goes to OUTPUT atomically
    local out=$1; shift
    if [[ -s $out ]]; then echo "skip $out (exists)"; return; fi
    echo "== $out: $*"
    mkdir -p "$(dirname "$out")"
    "$@" > "$out.tmp"
    mv "$out.tmp" "$out"
}

need() {  # need CELL...: true when every cell's trained run folder is there, else a note and false
    local c
    for c in "$@"; do
        if [[ ! -s $RUNS/$c/summary.json ]]; then
            echo "missing $RUNS/$c (train it with zoo bench --profile standard): its steps are skipped" >&2
            MISSING=1
            return 1
        fi
    done
}

# issue 3: the floor/ceiling rows at three n
for n in 2000 5000 10000; do
    step results/metrics/real_vs_real_n$n.txt $ZOO eval --real-vs-real --n $n --quiet --json results/metrics/real_vs_real_n$n.json
done

# sample grids (10x10, seed 0) of every seed-0 run; GAN/VAE-GAN/VAE for all three seeds
for f in pixel_gpt flow diffusion latent_diffusion vqvae; do
    [[ -s results/$f/samples.png ]] || ! need $f-s0 || $ZOO sample $RUNS/$f-s0 --n 100 --seed 0 --out results/$f/samples.png
done
for f in gan vae_gan vae; do
    for s in 0 1 2; do
        [[ -s results/$f/samples-s$s.png ]] || ! need $f-s$s || \
            $ZOO sample $RUNS/$f-s$s --n 100 --seed 0 --out results/$f/samples-s$s.png
    done
done

for f in vae vae_gan vqvae latent_diffusion; do
    [[ -s results/$f/interpolation.png ]] || ! need $f-s0 || \
        $ZOO sample $RUNS/$f-s0 --interpolate --n 8 --seed 0 --out results/$f/interpolation.png
done

# issue 4: exact-likelihood families -- test bits/dim on all 10,000 test images
for f in pixel_gpt flow; do
    for s in 0 1 2; do
        ! need $f-s$s || step results/$f/bpd_test_s$s.txt $ZOO eval $RUNS/$f-s$s --metrics bpd --n 10000 --quiet \
            --json results/$f/bpd_test_s$s.json
    done
done

# the VAE's IWAE bound with k = 100 on all 10,000 test images (the table's k = 16 bound uses 2,000)
! need vae-s0 || step results/vae/bpd_k100.json $PY -c "import zoo, json; from zoo.data import load_dataset; \
from zoo.metrics.bpd import bits_per_dim; m = zoo.load('$RUNS/vae-s0'); t = load_dataset('fashion-mnist', 'test'); \
print(json.dumps(bits_per_dim(m, t.images, batch_size=100, k=100)))"

# per-seed rows of the bench cells behind results/gan/README.md and results/diffusion/README.md
step results/gan/seeds.md $ZOO bench table $BENCH --families gan,vae_gan,vae
step results/diffusion/seeds.md $ZOO bench table $BENCH --families diffusion,latent_diffusion --sweep

# issue 5: mode-collapse check (fmnist-cnn class histogram of 5,000 samples per seed)
for f in gan vae_gan; do
    ! need $f-s0 $f-s1 $f-s2 || step results/$f/collapse.txt $ZOO bench collapse $BENCH --families $f \
        --seeds 0-2 --n 5000 --json results/$f/collapse.json
done

# issue 6: diffusion -- FID against NFE (the default sampler, DPM-Solver++(2M) SDE, at 10/20/50 steps, DDIM-50
# and DDPM-1000 at the same n, each with the run's own timestep spacing), the likelihood estimator
for f in diffusion latent_diffusion; do
    need $f-s0 || continue
    $PY benchmarks/bench_diffusion.py samples --run $RUNS/$f-s0 --out $SAMPLES --n 1000 --n-long 1000 \
        --only dpm++2m-sde-10 dpm++2m-sde-20 dpm++2m-sde-50 ddim-50 ddpm-1000
    [[ -s results/$f/trajectory.png ]] || $ZOO sample $RUNS/$f-s0 --trajectory --n 8 --seed 0 --out results/$f/trajectory.png
done
if need diffusion-s0 latent_diffusion-s0; then
    [[ -s $SAMPLES/latent_diffusion/ae-recon-0.npz ]] || \
        $PY benchmarks/bench_diffusion.py recon --run $RUNS/latent_diffusion-s0 --out $SAMPLES --n 1000
    step results/diffusion/fid_vs_nfe.txt $PY benchmarks/bench_diffusion.py fid --samples $SAMPLES --out results/diffusion
fi
# the bench's 50-term stratified VLB against all 1000 terms on the same 100 test images
! need diffusion-s0 || step results/diffusion/bpd_estimator.md $PY benchmarks/bench_diffusion.py bpd \
    --run $RUNS/diffusion-s0 --n-full 100 --terms 50 --n-strat 2000 --json results/diffusion/bpd_estimator.json

# issue 7: VQ-VAE codebook use, reconstruction MSE and FID, reconstruction grid, sample FID at n=5000
! need vqvae-s0 || step results/vqvae/eval.txt $PY benchmarks/vqvae_eval.py $RUNS/vqvae-s0 --samples 5000 \
    --grid results/vqvae/reconstructions.png --json results/vqvae/metrics.json

# timings, last: metric speed (issue 3), the KV cache, every family's sampling speed, the diffusion breakdown
if [[ $TIMINGS != 0 ]]; then
    step results/metrics/bench_metrics.md $PY benchmarks/bench_metrics.py --n 10000 --inception 16
    step results/pixel_gpt/kv_cache.md $PY benchmarks/bench_kv_cache.py --batch 64
    ! need pixel_gpt-s0 flow-s0 gan-s0 vae_gan-s0 vae-s0 vqvae-s0 diffusion-s0 latent_diffusion-s0 || \
        step results/speed.md $PY benchmarks/bench_family.py --min-time 3 \
        --run $RUNS/pixel_gpt-s0 --run $RUNS/flow-s0 --run $RUNS/gan-s0 --run $RUNS/vae_gan-s0 \
        --run $RUNS/vae-s0 --run $RUNS/vqvae-s0 --run $RUNS/diffusion-s0 --run $RUNS/latent_diffusion-s0
    ! need diffusion-s0 latent_diffusion-s0 || step results/diffusion/speed.md $PY benchmarks/bench_diffusion.py \
        speed --run $RUNS/diffusion-s0 --run $RUNS/latent_diffusion-s0 --json results/diffusion/speed.json
else
    echo "timings left out (TIMINGS=0)"
fi
if [[ -n $MISSING ]]; then echo "incomplete: some run folders are missing (see above)" >&2; exit 2; fi
echo "done"
