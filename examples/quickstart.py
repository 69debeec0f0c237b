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

# %% The recommended fit: the same one as `xpcs-denoise fit` and the report (fit_file / fit_two_time): the
# lag-band model's output fitted as it stands, pooled by precision with the raw fit, with a calibrated σ, and the
# path it took.
summary = xd.fit_file(out / "c2_denoised.h5", out / "fits.csv", fix_alpha=True, overwrite=True)
import csv  # noqa: E402

for row, truth in zip(csv.DictReader(open(out / "fits.csv")), sim.gamma, strict=True):
    g, e = float(row["gamma"]), float(row["gamma_err"])
    print(f"ROI {row['roi']}: Gamma = {g:.4f} ± {e:.4f} /frame (true {truth:.4f}, z = {(g - truth) / e:+.1f}; "
          f"{row['path']}, {row['status']})")
print(f"report: {out / 'report' / 'index.html'}")
