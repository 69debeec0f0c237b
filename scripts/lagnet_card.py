"""Put a trained lag-band model in place with its card: copy ``lagnet.safetensors`` and ``lagnet_card.json`` from
a training run's ``best`` folder, and add the benchmark's tables (``benchmarks/bench_models.py --json``):
faithfulness, Γ bias and error per bin on simulated and real held-out crops, ageing, long series, speed and
memory. The card's SHA-256 still matches the weights (checked by loading the result). When ``out`` already holds
these weights, what its card has beyond the run's (lineage, calibration) is kept, and the benchmark parts that the
JSON does not hold keep their values (a part measured again replaces its old table). The adaptive age stage
(``age_stage``, scripts/age_stage.py) does not depend on the weights and is kept in any case.

    python scripts/lagnet_card.py runs/lagnet/best lagnet_bench.json src/xpcs_denoise/pretrained/lagnet
"""

import argparse
import json
import shutil
from pathlib import Path

from xpcs_denoise.nn.lagnet import CARD, WEIGHTS, LagDenoiser


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a training run's best folder")
    ap.add_argument("bench", help="JSON written by benchmarks/bench_models.py --json")
    ap.add_argument("out", help="model folder to write (e.g. src/xpcs_denoise/pretrained/lagnet)")
    a = ap.parse_args()
    run, out = Path(a.run), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if run.resolve() != out.resolve():
        shutil.copyfile(run / WEIGHTS, out / WEIGHTS)
    card = json.loads((run / CARD).read_text())
    old = json.loads((out / CARD).read_text()) if (out / CARD).is_file() else {}
    same = old.get("weights_sha256") == card.get("weights_sha256")
    if same:
        card = {**old, **card}
    for key in ("age_stage", "age_stage_calibration"):  # the stage does not depend on the weights: it stays
        if key in old and key not in card:
            card[key] = old[key]
    card["benchmark"] = {**(old.get("benchmark", {}) if same else {}), **json.loads(Path(a.bench).read_text())}
    card["benchmark"]["script"] = "benchmarks/bench_models.py"
    (out / CARD).write_text(json.dumps(card, indent=1) + "\n")
    den = LagDenoiser.from_directory(out)  # the weights still match the card
    print(f"{out}: {den.card['name']}, weights SHA-256 {den.card['weights_sha256'][:12]}…, "
          f"{(out / WEIGHTS).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
