#!/usr/bin/env bash
# The release as a user gets it (issue 20, part 4): build the wheel from the files git would ship,
# install it into a fresh virtualenv (no system site-packages; the runtime dependencies at the
# versions requirements.txt pins, from pip's cache where it has them), and run it from outside the
# repository so that nothing can be imported from the source tree:
#   flowmatch --version   equals the version in the sources (src/flowmatch/_utils/version.py);
#   the C kernel          compiled on first use from the _auction.c the wheel ships (a fresh cache),
#                         and without a C compiler the POT fallback, both with the optimal assignment;
#   flowmatch demo --quick  trains, samples, evaluates and plots.
# Prints the time of each phase. Run as `make wheel-check` (CI: .ci/run, before make test).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
t0=$SECONDS
phase() { echo "wheel-check: $1 ($((SECONDS - t0)) s)"; }
# run a command with its output kept in a log, shown only when it fails
quiet() { local log="$TMP/$1.log"; shift; "$@" > "$log" 2>&1 || { cat "$log" >&2; echo "wheel-check: failed: $*" >&2; exit 1; }; }

# 1. the wheel, built (build isolation, as pip does for a user) from a copy of the tracked and
#    untracked-but-not-ignored files: no build/ or egg-info is left in the work tree
mkdir "$TMP/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) \
    | tar -xf - -C "$TMP/src"
quiet build "$PYTHON" -m pip wheel --no-deps "$TMP/src" -w "$TMP/dist"
WHEEL="$(ls "$TMP"/dist/flowmatch-*.whl)"
# the listing is read whole (grep without -q): an early exit of grep -q would SIGPIPE unzip, which
# pipefail turns into a failure on a wheel that has the file
CONTENTS=$(unzip -l "$WHEEL")
grep "flowmatch/py.typed" <<<"$CONTENTS" >/dev/null || { echo "wheel-check: py.typed missing from $WHEEL" >&2; exit 1; }
grep "flowmatch/ot/_auction.c" <<<"$CONTENTS" >/dev/null || { echo "wheel-check: _auction.c missing from $WHEEL" >&2; exit 1; }
phase "built $(basename "$WHEEL")"

# 2. a fresh virtualenv with the wheel and its core dependencies only, pinned by requirements.txt
"$PYTHON" -m venv "$TMP/venv"
VENV="$TMP/venv"
# --no-compile: no .pyc for the thousands of modules of torch and SciPy that nothing here imports
# (measured on the shared 2-core machine: 27 to 63 s instead of 111 to 166 s); Python compiles what it imports
quiet install "$VENV/bin/python" -m pip install --no-compile "$WHEEL" -c "$ROOT/requirements.txt"
"$VENV/bin/python" -c "import flowmatch" # the install is whole
phase "installed into a fresh venv ($("$VENV/bin/python" -m pip list 2>/dev/null | tail -n +3 | wc -l) packages, torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"

# 3. run from outside the repository, with no PYTHONPATH and a fresh kernel cache
mkdir "$TMP/work"
cd "$TMP/work"
unset PYTHONPATH
export FLOWMATCH_CACHE_DIR="$TMP/cache"
expected="flowmatch $(sed -n 's/^VERSION = "\(.*\)"$/\1/p' "$ROOT/src/flowmatch/_utils/version.py")"
got="$("$VENV/bin/flowmatch" --version)"
[ "$got" = "$expected" ] || { echo "wheel-check: flowmatch --version printed '$got', expected '$expected'" >&2; exit 1; }
meta="flowmatch $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("flowmatch"))')"
[ "$meta" = "$expected" ] || { echo "wheel-check: the wheel's metadata says '$meta', expected '$expected'" >&2; exit 1; }
phase "$got"

cat > "$TMP/kernel.py" <<'PY'
"""The assignment of a random 64 x 64 cost from the installed package: by the compiled auction
(argv[1] == "native") or by the POT fallback ("fallback"), optimal either way."""
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment

import flowmatch
from flowmatch.ot import native
from flowmatch.ot.assignment import solve_assignment

if not flowmatch.__file__.startswith(sys.prefix):
    sys.exit(f"flowmatch imported from {flowmatch.__file__}, not from the virtualenv {sys.prefix}")
cost = np.random.default_rng(0).random((64, 64))
result = solve_assignment(cost)
rows, cols = linear_sum_assignment(cost)
if abs(result.cost - cost[rows, cols].sum()) > 1e-9:
    sys.exit(f"assignment cost {result.cost} is not the optimum {cost[rows, cols].sum()}")
if sys.argv[1] == "native":
    if native.load() is None or result.solver != "auction":
        sys.exit(f"the kernel did not build: {native.build_error()}")
    print(f"kernel compiled on first use ({native.variant()}), assignment optimal")
else:
    if native.load() is not None or result.solver not in ("emd", "lsa"):
        sys.exit(f"expected the POT fallback without a compiler, got solver {result.solver}")
    print(f"no compiler: {native.build_error()}; POT fallback ({result.solver}), assignment optimal")
PY
"$VENV/bin/python" "$TMP/kernel.py" native
ls "$FLOWMATCH_CACHE_DIR"/fm_auction_*.so > /dev/null
# no compiler: PATH holds only the virtualenv, CC is unset
env -u CC PATH="$VENV/bin" FLOWMATCH_CACHE_DIR="$TMP/cache-nocc" "$VENV/bin/python" "$TMP/kernel.py" fallback
phase "C kernel and its fallback"

# the table on stdout; the progress bars (stderr) only when it fails
"$VENV/bin/flowmatch" demo --quick --out "$TMP/work/demo" --threads 1 2> "$TMP/demo.log" \
    || { cat "$TMP/demo.log" >&2; echo "wheel-check: flowmatch demo --quick failed" >&2; exit 1; }
for f in metrics.json samples.png trajectories.png loss.png; do
    test -s "$TMP/work/demo/$f" || { echo "wheel-check: demo --quick wrote no $f" >&2; exit 1; }
done
phase "flowmatch demo --quick ran from the wheel"
echo "wheel-check: passed in $((SECONDS - t0)) s"
