#!/usr/bin/env python3
"""Cross-check of `aimcsim device` against IBM aihwkit.

Builds one analog tile in aihwkit with the study's settings (REFERENCE.md
section 7), programs a random weight matrix W ~ N(0, std^2) onto it, drifts
it to each requested inference time and computes, per programming trial, the
same statistics as `aimcsim device` (src/functional/device.rs):

- weight_rel_err = ||W_eff - W||_F / ||W||_F, with W_eff the tile's
  programmed-and-drifted (and read) conductance difference converted back
  to weights, times the digital column (mapping) scales, times GDC's alpha;
  in aihwkit: `tile.get_weights(apply_weight_scaling=True)` (the array's
  weights times the mapping scales) times `tile.alpha`.
- mvm_rel_err = ||Y - X W||_F / ||X W||_F and mvm_cosine (Y and X W as
  flattened vectors), Y being the layer's eval-mode forward of X (periphery,
  mapping scales and GDC alpha applied by aihwkit itself).
- gdc_alpha: the tile's `alpha` after `drift_analog_weights(t)`.
- bm_passes_mean: passes through the array per token (iterative bound
  management), inferred from the output: with the ADC on, every raw output
  of a pass at input reduction r is (ADC code) x step x abs-max(token) x r,
  so r is the largest power of two (<= 32) dividing all the token's codes.
  aihwkit's torch MVM (like aimcsim's `bound_management_scope: Batch`)
  re-runs the whole batch when any output clips, so there this equals the
  passes per batch; aihwkit's RPUCuda MVM (like aimcsim's default `Token`
  scope) re-runs only the tokens that clipped (see
  docs/aihwkit-crosscheck.md).

Per trial the tile is programmed once (`program_analog_weights`, which also
takes GDC's reference readout) and then drifted to every time in order
(`drift_analog_weights(t)` draws drift and read noise at t anew from the
programmed state, as aimcsim's `drift_to`), one forward pass of the whole
batch per time. Rows: mean and sample std over the trials.

Randomness: W and X come from a torch.Generator seeded from (--seed,
"weights-inputs"); trial k re-seeds torch's global generator from (--seed,
"trial", k) (SHA-256 of both, so the streams are unrelated). That generator
drives aihwkit's programming noise, drift exponents and read noise (all
torch). With the default `--tile rpucuda` (InferenceRPUConfig, the C++
RPUCuda simulator) the output noise of the forward passes and of GDC's
readouts comes from RPUCuda's own generator, which aihwkit 1.1.0 offers no
way to seed from Python: numbers then vary slightly from run to run
(statistically the same). `--tile torch` uses TorchInferenceRPUConfig (same
parameters, aihwkit's pure-torch MVM), which is fully reproducible.

W and X are not aimcsim's numbers (different generators), so the comparison
is statistical; run several seeds to see the between-matrix spread.

Usage (aihwkit 1.1.0, torch 2.10, CPython 3.11):
    /tmp/aihwkit-venv/bin/python scripts/aihwkit_crosscheck.py \
        --trials 10 --seed 0 > aihwkit_device.json
Prints a JSON list of rows with the field names of
`aimcsim device --format json`; a summary of the settings goes to stderr.
"""

import argparse
import hashlib
import json
import math
import re
import sys
import time
import warnings

import torch

from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig
from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType

# Drift-time units as the study's scripts (and aimcsim) count them.
UNITS = [
    ("y", 31_536_000.0),
    ("mo", 2_592_000.0),
    ("w", 604_800.0),
    ("d", 86_400.0),
    ("h", 3_600.0),
    ("min", 60.0),
    ("s", 1.0),
]


def parse_drift(s):
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]+)\s*", s)
    if not m:
        raise argparse.ArgumentTypeError(f"`{s}` is not a drift time (e.g. 0s, 1h, 1mo, 10y)")
    units = dict(UNITS)
    if m.group(2) not in units:
        raise argparse.ArgumentTypeError(f"unknown unit in `{s}`")
    return float(m.group(1)) * units[m.group(2)]


def format_drift(secs):
    if secs > 0 and float(secs).is_integer():
        for name, k in UNITS:
            if (secs / k).is_integer():
                return f"{int(secs // k)}{name}"
    return f"{secs:g}s"


def bits_to_res(bits):
    """aihwkit's convention: resolution = 1 / (2^bits - 2) of the full range
    [-bound, bound], i.e. a step of 2 bound / 254 for 8 bits (127 levels on
    each side of 0)."""
    return 1.0 / (2**bits - 2)


def make_rpu_config(tile, dac_bits, adc_bits, out_noise, out_bound, g_max):
    cls = {"rpucuda": InferenceRPUConfig, "torch": TorchInferenceRPUConfig}[tile]
    rc = cls()
    f = rc.forward
    f.inp_res = bits_to_res(dac_bits)
    f.out_res = bits_to_res(adc_bits)
    f.inp_bound = 1.0
    f.out_bound = out_bound
    f.out_noise = out_noise
    f.noise_management = NoiseManagementType.ABS_MAX
    f.bound_management = BoundManagementType.ITERATIVE
    # Column-wise digital scales: each output's max|W| maps to 1 in the array.
    rc.mapping.weight_scaling_omega = 1.0
    rc.mapping.weight_scaling_columnwise = True
    rc.mapping.digital_bias = False
    rc.mapping.learn_out_scaling = False
    rc.noise_model = PCMLikeNoiseModel(
        g_max=g_max, g_converter=SinglePairConductanceConverter(g_max=g_max)
    )
    rc.drift_compensation = GlobalDriftCompensation()
    return rc


def derived_seed(seed, *path):
    """A 63-bit seed for the stream `path` under `seed` (SHA-256 of both), so
    the W/X generator and every trial's generator are unrelated. (Seeding a
    trial with a small integer such as `seed + k` would, for some k, replay
    the W/X stream and correlate that trial's programming noise with W.)"""
    key = "aimcsim-aihwkit-crosscheck/" + "/".join(str(v) for v in (seed, *path))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def rel_err(a, ref):
    return (torch.linalg.norm(a - ref) / torch.linalg.norm(ref)).item()


def cosine(a, b):
    a, b = a.flatten(), b.flatten()
    return (a @ b / (torch.linalg.norm(a) * torch.linalg.norm(b))).item()


def bm_passes(y, col_gain, nm, adc_step, max_passes=6):
    """Mean passes through the array per token, inferred from the ADC codes
    (see the module doc): for each token, the largest power of two r <= 32
    that divides all its codes gives 1 + log2(r) passes."""
    codes = y.double() / col_gain.double().view(1, -1) / (nm.double().view(-1, 1) * adc_step)
    passes = torch.ones(codes.shape[0], dtype=torch.float64)
    for p in range(2, max_passes + 1):
        c = codes / 2.0 ** (p - 1)
        divisible = ((c - c.round()).abs() < 0.02).all(dim=1)
        passes[divisible] = float(p)
    return passes.mean().item()


def mean_std(v):
    n = len(v)
    m = sum(v) / n
    if n < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=512, help="inputs of W (default 512)")
    ap.add_argument("--cols", type=int, default=512, help="outputs of W (default 512)")
    ap.add_argument("--weight-std", type=float, default=0.02)
    ap.add_argument("--tokens", type=int, default=320)
    ap.add_argument("--drift", default="0s,1h,1d,1w,1mo,1y,10y")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile", choices=["rpucuda", "torch"], default="rpucuda",
                    help="rpucuda: InferenceRPUConfig (C++ MVM, default); "
                         "torch: TorchInferenceRPUConfig (pure-torch MVM, fully seeded)")
    ap.add_argument("--dac-bits", type=int, default=8)
    ap.add_argument("--adc-bits", type=int, default=8)
    ap.add_argument("--out-noise", type=float, default=0.04)
    ap.add_argument("--out-bound", type=float, default=12.0)
    ap.add_argument("--g-max", type=float, default=25.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    drift_s = [parse_drift(s) for s in args.drift.split(",")]
    if args.trials < 1:
        ap.error("--trials must be >= 1")

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    t_start = time.time()

    m, n, tokens = args.rows, args.cols, args.tokens
    gen = torch.Generator().manual_seed(derived_seed(args.seed, "weights-inputs"))
    w = torch.randn(m, n, generator=gen, dtype=torch.float32) * args.weight_std  # aimcsim: Y = X W
    x = torch.randn(tokens, m, generator=gen, dtype=torch.float32)
    w64, x64 = w.double(), x.double()
    y_exact = x64 @ w64
    nm = x.abs().amax(dim=1)  # noise management: each token's abs-max
    adc_step = 2.0 * args.out_bound * bits_to_res(args.adc_bits)

    rc = make_rpu_config(args.tile, args.dac_bits, args.adc_bits, args.out_noise,
                         args.out_bound, args.g_max)
    layer = AnalogLinear(m, n, bias=False, rpu_config=rc)
    layer.eval()
    tiles = list(layer.analog_tiles())
    if len(tiles) != 1:
        sys.exit(f"expected one analog tile for {m} x {n}, got {len(tiles)}")
    tile = tiles[0]

    points = [[] for _ in drift_s]  # per drift time: (w_err, y_err, cos, alpha, passes)
    with torch.no_grad():
        for k in range(args.trials):
            torch.manual_seed(derived_seed(args.seed, "trial", k))
            # aihwkit's weight is [out, in] = W^T; set_weights applies the
            # column-wise mapping scales and resets the programming reference.
            layer.set_weights(w.T.contiguous())
            layer.program_analog_weights()
            for i, t in enumerate(drift_s):
                layer.drift_analog_weights(t)
                alpha = float(tile.alpha.reshape(-1)[0])
                w_tile, _ = tile.get_weights(apply_weight_scaling=True)  # [out, in]
                w_eff = w_tile.double().T * alpha
                y = layer(x)
                scales = tile.get_scales().reshape(-1)
                points[i].append((
                    rel_err(w_eff, w64),
                    rel_err(y.double(), y_exact),
                    cosine(y.double(), y_exact),
                    alpha,
                    bm_passes(y, scales * alpha, nm, adc_step),
                ))

    rows = []
    for t, pts in zip(drift_s, points):
        cols = list(zip(*pts))
        (we, wes), (ye, yes), (c, cs), (a, as_), (bm, _) = (mean_std(list(v)) for v in cols)
        rows.append({
            "drift": format_drift(t),
            "drift_s": t,
            "trials": args.trials,
            "weight_rel_err_mean": we,
            "weight_rel_err_std": wes,
            "mvm_rel_err_mean": ye,
            "mvm_rel_err_std": yes,
            "mvm_cosine_mean": c,
            "mvm_cosine_std": cs,
            "gdc_alpha_mean": a,
            "gdc_alpha_std": as_,
            "bm_passes_mean": bm,
        })
    json.dump(rows, sys.stdout, indent=2)
    sys.stdout.write("\n")

    import aihwkit
    print(
        f"aihwkit {aihwkit.__version__}, torch {torch.__version__}, "
        f"CPython {sys.version.split()[0]}; tile {args.tile} ({type(rc).__name__}); "
        f"W {m}x{n} std {args.weight_std}, {tokens} tokens, {args.trials} trials, "
        f"seed {args.seed}; {time.time() - t_start:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
