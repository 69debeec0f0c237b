"""Set the step threshold of the adaptive age stage (core.adaptive) and store the stage in lag-band model cards.

    python scripts/age_stage.py [--n 600] [--seed 7] [--quantile 0.95] [--write DIR ...]

A step is cut where the lines before and after a frame differ by more than ``step_threshold`` standard errors. The
threshold is the ``quantile`` (default 0.95) of the largest such score over simulated series **without** steps, so
a false step is found in 1 − quantile of them (it costs little: the windows there stop at it): speckle series of
100–1,000 frames (Poisson counts of :func:`simulate_speckle`), Γ 0.003–0.3 frames⁻¹, β 0.05–0.5, 0.01–3 photons per
pixel per frame and 300–20,000 pixels (log-uniform), stationary (α 0.6–1.5) or with Γ changing smoothly by up to
10× over the series. The same number of series with a step of 1.5–10× in Γ at a random frame measure how often a
step is found (printed and stored). The other settings are the stage's defaults (the ladder of widths, the
intervals' two standard errors of the intersection-of-confidence-intervals rule, the step scales and the pooled
lags).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from xpcs_denoise.core.adaptive import AgeStage, max_step_score
from xpcs_denoise.core.errors import XPCSInputError
from xpcs_denoise.core.simulation import simulate_speckle


def series(i, rng, step: bool):
    n = int(rng.choice([100, 200, 400, 1000]))
    g0 = 10 ** rng.uniform(np.log10(0.003), np.log10(0.3))
    t = np.arange(n)
    if step:
        at = int(rng.uniform(0.2, 0.8) * n)
        factor = 10 ** (rng.uniform(np.log10(1.5), 1.0) * rng.choice([-1, 1]))
        gamma, alpha, where = np.where(t < at, g0, g0 * factor), 1.0, at
    elif i % 2:
        gamma, alpha, where = g0 * 10 ** (rng.uniform(-1, 1) * t / (n - 1)), 1.0, None
    else:
        gamma, alpha, where = g0, rng.uniform(0.6, 1.5), None
    px = int(10 ** rng.uniform(np.log10(300), np.log10(20000 if n < 1000 else 5000)))
    sim = simulate_speckle(n, px, gamma=gamma, beta=rng.uniform(0.05, 0.5), alpha=alpha,
                           mean_count=10 ** rng.uniform(-2, np.log10(3)), seed=int(rng.integers(2**31)))
    return sim.two_time()[0], where


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=600, help="series without steps (and as many with one)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quantile", type=float, default=0.95)
    p.add_argument("--write", nargs="*", default=[], help="model folders whose cards get the stage")
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    free, stepped = [], []
    for i in range(2 * a.n):
        try:
            c2, where = series(i, rng, step=i >= a.n)
        except XPCSInputError:  # a frame without a photon: Eq. 1 undefined
            continue
        (stepped if where is not None else free).append(max_step_score(c2))
    free, stepped = np.asarray(free), np.asarray(stepped)
    thr = float(np.quantile(free, a.quantile))
    stage = AgeStage(step_threshold=round(thr, 2))
    record = {"method": "step_threshold = quantile of the largest step score over simulated series without steps",
              "quantile": a.quantile, "seed": a.seed, "n_without_steps": int(free.size),
              "n_with_step": int(stepped.size), "false_step_rate": float(np.mean(free > stage.step_threshold)),
              "steps_found": float(np.mean(stepped > stage.step_threshold)),
              "table": [{"threshold": round(float(v), 2), "false_step_rate": float(np.mean(free > v)),
                         "steps_found": float(np.mean(stepped > v))}
                        for v in np.quantile(free, [0.8, 0.9, 0.95, 0.99])],
              "script": "scripts/age_stage.py", "seconds": round(time.time() - t0)}
    print(json.dumps({"age_stage": stage.to_dict(), "age_stage_calibration": record}, indent=1))
    for d in a.write:
        cards = list(Path(d).glob("*card.json"))
        if len(cards) != 1:
            raise SystemExit(f"{d}: expected one *card.json, found {len(cards)}")
        card = json.loads(cards[0].read_text())
        card["age_stage"] = stage.to_dict()
        card["age_stage_calibration"] = record
        tmp = cards[0].with_suffix(".tmp")
        tmp.write_text(json.dumps(card, indent=1) + "\n")
        tmp.replace(cards[0])
        print(f"wrote {cards[0]}")


if __name__ == "__main__":
    main()
