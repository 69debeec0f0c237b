"""Choose the classical peers' widths on the training split only (METHOD §5: compare the peers at their best).

The training targets of the shipped model card are split again by series (20 %, seed 1); the PCA filter is
fitted on the inner-training targets, and every setting is scored on the inner-validation crops by MRE(Γ) in
0.01 < Γ < 0.15 and MSE(1TCF). The real validation split is never looked at here.

    OMP_NUM_THREADS=1 python3 scripts/tune_peers.py ../shared/data/cned_train.h5 [max_crops]
"""

import json
import sys

import numpy as np

from xpcs_denoise.analysis.evaluation import compare_methods, format_table
from xpcs_denoise.core.scaling import card_split, split_by_target
from xpcs_denoise.io.prepared import load_prepared
from xpcs_denoise.nn.denoiser import Denoiser
from xpcs_denoise.restoration import baselines


def main(path, max_crops=1500):
    ds = load_prepared(path)
    card = Denoiser.pretrained().card
    train = card_split(ds, card, "training")
    inner_tr, inner_va = split_by_target(train, 0.2, 1)
    fit_set, score_set = train.subset_targets(inner_tr), train.subset_targets(inner_va)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(score_set.inputs), min(max_crops, len(score_set.inputs)), replace=False))
    methods = {}
    for k in (4, 6, 8, 12, 16, 24):
        pca = baselines.PCAFilter.fit(fit_set.targets, k)
        methods[f"pca k={k}"] = pca.predict
    for w in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 3.0):
        methods[f"tv w={w}"] = lambda x, w=w: baselines.tv_denoise(x, w)
    for s in (0.5, 1.0, 1.5, 2.0):
        methods[f"gaussian s={s}"] = lambda x, s=s: baselines.gaussian_denoise(x, s)
    try:
        import bm3d  # noqa: F401

        for s in (0.1, 0.2, 0.3, 0.5):
            methods[f"bm3d s={s}"] = lambda x, s=s: baselines.bm3d_denoise(x, s)
    except ImportError:
        pass
    table = compare_methods(score_set.inputs[pick], score_set.targets, score_set.target_index[pick], methods)
    print(format_table(table))
    print(json.dumps({k: {m: round(v, 4) for m, v in r.items()} for k, r in table.items()}))


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
