"""OT-CFM against I-CFM on N(0, I) -> moons: the same network, data and seeds, only the coupling differs.

Trains the 3x64 SELU MLP with each method and prints, on held-out points, W2 after Euler 100
steps, the normalised path energy (NPE: 0 for straight, optimal-transport paths) and W2 after
1, 2 and 4 Euler steps (what straight paths buy: few-step sampling).

    python docs/tutorials/ot_vs_icfm.py           # the full run (about a minute on one CPU thread)
    python docs/tutorials/ot_vs_icfm.py --quick   # seconds: a smoke test, not a result
"""

import argparse
import time

import torch

import flowmatch
from flowmatch.data import sample_toy
from flowmatch.metrics import normalized_path_energy, w2

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a few hundred steps and 300 test points")
args = parser.parse_args()
steps, n_test = (200, 300) if args.quick else (4000, 2000)

torch.set_num_threads(1)  # a 3x64 MLP: extra threads only spin-wait
g = torch.Generator().manual_seed(0)
data = sample_toy("moons", 10_000, generator=g)  # training draw of the target q1
x0_test = torch.randn(n_test, 2, generator=g)  # held-out source points
x1_test = sample_toy("moons", n_test, generator=g)  # held-out target points

print(f"N(0, I) -> moons, {steps} steps of batch 256, {n_test} test points")
print(
    f"{'method':8} {'W2 euler 100':>12} {'NPE':>7} {'W2 1 step':>10} {'W2 2 steps':>11} {'W2 4 steps':>11} {'train s':>8}"
)
for method in ("ot-cfm", "i-cfm"):
    torch.manual_seed(0)  # the same initial weights for both
    model = flowmatch.MLP(dim=2)
    fm = flowmatch.methods.get(method, sigma=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(1)  # the same batches for both
    start = time.perf_counter()
    for _ in range(steps):
        x1 = data[torch.randint(len(data), (256,), generator=gen)]
        x0 = torch.randn(256, 2, generator=gen)
        loss = fm.loss(model, x0, x1, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - start
    model.eval()
    out = flowmatch.sample(model, x0_test, solver="euler", steps=100, return_trajectory=True)
    npe = normalized_path_energy(out.trajectory, out.times, x0_test, x1_test)
    few = [w2(flowmatch.sample(model, x0_test, solver="euler", steps=k).x, x1_test) for k in (1, 2, 4)]
    print(
        f"{method:8} {w2(out.x, x1_test):12.3f} {npe:7.3f} {few[0]:10.3f} {few[1]:11.3f} {few[2]:11.3f} {train_s:8.1f}"
    )
# What a perfect sampler scores: target points taken at random from a larger draw (two draws of
# the same size would share make_moons' evenly spaced positions and sit closer than samples can).
pool = sample_toy("moons", 10 * n_test, generator=g)
floor = w2(pool[torch.randperm(len(pool), generator=g)[:n_test]], x1_test)
print(f"W2 sampling floor (target points against the test points): {floor:.3f}")
