"""Quick start, notebook style: frames → 2TCFs → denoised → fits → report, in files, as at a beamline.

Run: python examples/quickstart.py [OUT_DIR]   (about half a minute on a laptop CPU)
"""

# %% A small simulated experiment: 120 frames, 3 q-rings (Γ = D q² = 0.008..0.05 per frame, fewer photons at higher q).
import sys
from pathlib import Path

import numpy as np

import xpcs_denoise as xd

out = Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart-output")
out.mkdir(exist_ok=True)
sim = xd.simulate_q_rings(n_frames=120, n_rois=3, q_min=0.004, q_max=0.01, count_at_qmin=1.0, seed=0)
np.save(out / "frames.npy", sim.frames[:, None, :].astype(np.uint16))  # (T, H=1, W) photon counts
np.save(out / "rois.npy", sim.labels[None, :].astype(np.int32))        # (H, W) labels 1..3

# %% The same three steps as `xpcs-denoise correlate / denoise / report` on the shell.
xd.correlate_file(out / "frames.npy", out / "rois.npy", out / "c2.h5", q=sim.q, overwrite=True)
xd.denoise_file(out / "c2.h5", out / "c2_denoised.h5", uncertainty=True, overwrite=True)
xd.report_file(out / "c2_denoised.h5", out / "report", compare=("gaussian",), overwrite=True)

# %% Read the result back and fit the first 50 frames, raw and denoised.
res = xd.read_c2(out / "c2_denoised.h5")
for name, c2 in (("raw", res.raw), ("denoised", res.c2)):
    fit = xd.fit_g2(xd.one_time_from_two_time(c2[:, :50, :50]), fix={"alpha": 1.0})
    for k in range(len(res.q)):
        print(f"{name:9s} q = {res.q[k]:.4f} 1/A: Gamma = {fit.gamma[k]:.4f} ± {fit.gamma_err[k]:.4f} /frame "
              f"(true {sim.gamma[k]:.4f})")
print(f"report: {out / 'report' / 'index.html'}")
