"""Store the training crops' latent distribution in a model card (for xpcs_denoise.anomaly_scores).

    python scripts/latent_reference.py MODEL_DIR [--data ../shared/data/cned_train.h5]

Uses the crops of the training split the card names (every target not in ``split.val_target_names``), in
model units as stored. The weights are not touched, so their SHA-256 still holds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xpcs_denoise import Denoiser
from xpcs_denoise.core.scaling import card_split
from xpcs_denoise.io.files import atomic_path
from xpcs_denoise.io.prepared import load_prepared
from xpcs_denoise.nn.anomaly import latent_reference


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--data", default="../shared/data/cned_train.h5")
    a = p.parse_args()
    den = Denoiser.from_directory(a.model)
    ds = load_prepared(a.data)
    tr = card_split(ds, den.card, "training")
    ref = latent_reference(den, tr.inputs)
    path = Path(a.model) / "model_card.json"
    card = json.loads(path.read_text())
    card["latent_reference"] = {**ref, "data_sha256": ds.source_sha256, "split": "training",
                                "command": "python scripts/latent_reference.py MODEL_DIR"}
    with atomic_path(path, overwrite=True) as tmp:  # the card is replaced whole or not at all
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    print(f"{ref['n_crops']} training crops; median residual {ref['median_residual']:.4f}")


if __name__ == "__main__":
    main()
