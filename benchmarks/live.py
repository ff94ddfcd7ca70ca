"""The live CPU share of `edge-emo listen` for two checkouts side by side (code: edge_emo/bench/live.py).

python -m benchmarks.live CHECKOUT_A CHECKOUT_B [ROUNDS] [WINDOW_S]
"""

import sys

from edge_emo.bench.live import side_by_side
from edge_emo.runtime.shipped import DEFAULT_MODEL, model_bundle

if __name__ == "__main__":
    side_by_side(
        [sys.argv[1], sys.argv[2]],
        model_bundle(DEFAULT_MODEL),
        int(sys.argv[3]) if len(sys.argv) > 3 else 3,
        float(sys.argv[4]) if len(sys.argv) > 4 else 15.0,
    )
