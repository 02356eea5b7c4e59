"""Class-conditional digits with classifier-free guidance: one model, sampled at several scales w.

Trains a ConditionalMLP on scikit-learn's 8x8 digits (flattened to 64 numbers, in [-1, 1]) by
OT-CFM within labels, dropping the label with probability 0.1 so that the same network also learns
the unconditional field. Sampling integrates v_w = v_null + w (v_cond - v_null): w = 0 is
unconditional, w = 1 the plain conditional field, w > 1 sharpens the class. A small CNN trained on
the real training digits scores the samples: the accuracy of the requested class, and the Fréchet
distance (FD) in its feature space, beside the value of the real test digits.

    python docs/tutorials/conditional_digits.py           # the full run (a few minutes on one CPU thread)
    python docs/tutorials/conditional_digits.py --quick   # seconds: a smoke test, not a result
"""

import argparse
import time

import torch

import flowmatch
from flowmatch.couplings import ExactOT, WithinLabels
from flowmatch.data.images import load_digits
from flowmatch.metrics.images import accuracy, classifier_features, frechet_distance, train_classifier
from flowmatch.models import ConditionalMLP
from flowmatch.models.guidance import guided
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.paths import LinearPath

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a few hundred steps, a one-epoch classifier")
args = parser.parse_args()
steps, epochs = (150, 1) if args.quick else (5000, 20)

torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
digits = load_digits()  # (1797, 1, 8, 8) in [-1, 1], labels 0..9
perm = torch.randperm(len(digits), generator=g)
test, train = perm[:359], perm[359:]
x_train, y_train = digits.images[train], digits.labels[train]
x_test, y_test = digits.images[test], digits.labels[test]

torch.manual_seed(0)
model = ConditionalMLP(64, num_classes=10, hidden=256)  # labels through a learned embedding (+ a null one)
fm = FlowMatcher(LinearPath(0.0), WithinLabels(ExactOT()), cond_dropout=0.1)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
start = time.perf_counter()
for _ in range(steps):
    idx = torch.randint(len(x_train), (128,), generator=g)
    x1, c = x_train[idx].flatten(1), y_train[idx]
    loss = fm.loss(model, torch.randn(128, 64, generator=g), x1, c, generator=g)
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"trained {steps} steps of batch 128 in {time.perf_counter() - start:.1f} s; final loss {loss.item():.4f}")

classifier, info = train_classifier(x_train, y_train, 10, epochs=epochs, seed=0)
real_test = classifier_features(classifier, x_test)
real_train = classifier_features(classifier, x_train)
fd_real = frechet_distance(real_test, real_train)
print(f"{'samples':17} {'accuracy':>9} {'FD':>8} {'FD / real':>10}")
model.eval()
noise = torch.randn(len(x_test), 64, generator=torch.Generator().manual_seed(1))  # the same for every w
for w in (0.0, 1.0, 1.5, 2.0, 3.0):
    with torch.no_grad():
        x = flowmatch.sample(guided(model, w), noise, solver="midpoint", steps=10, cond=y_test).x
    x = x.clamp(-1, 1).reshape(-1, 1, 8, 8)
    fd = frechet_distance(classifier_features(classifier, x), real_train)
    print(f"guidance w = {w:<5} {accuracy(classifier, x, y_test):9.1%} {fd:8.3f} {fd / fd_real:10.2f}")
print(f"{'real test digits':17} {accuracy(classifier, x_test, y_test):9.1%} {fd_real:8.3f} {1.0:10.2f}")
