"""xpcs-denoise: denoising of XPCS two-time correlation functions with CNN encoder–decoder ensembles.

Public API (stable names):

- :func:`two_time` — Eq. 1, 2TCFs of every q-ROI from a frame stack;
- :func:`one_time_from_two_time` — Eq. 2, the 1TCF of one or many 2TCFs;
- :func:`time_resolved_cuts` — 1TCFs at each age for non-equilibrium data;
- :func:`find_bad_frames` — frames with single-frame events (cosmic rays, beam dumps...), per ROI;
- :func:`fit_g2` — batched fits of Eq. 3 with bounds, fixed parameters, weights, covariance and reports;
- :func:`fit_diffusion` — Γ = D qⁿ (n fixed or free) from Γ(q); :func:`fit_rows` — fits as table rows;
- :func:`sigma_for_fit`, :func:`cut_trust` — σ of 1TCF points for weighted fits; trust flags of cuts;
- :func:`simulate_speckle` — speckle series with known Γ, β, α (ground truth);
- :class:`Denoiser` — the pretrained CNN-ED ensemble;
- :func:`denoise` — one entry point for the ensemble and its classical peers (``method=``);
- :func:`q_dependence`, :func:`ageing` — the paper's Fig. 5 and Fig. 6 workflows;
- :func:`subsample_frames` — every k-th frame of a 2TCF, for slow dynamics;
- :func:`fit_two_time`, :func:`cut_fits` — Eq. 3 parameters of raw or denoised 2TCFs, Γ's error calibrated
  from data stored beside the weights, and the path taken per 2TCF;
- :func:`finetune` — self-supervised (Noise2Noise) fine-tuning of the ensemble on the user's frames;
- :func:`read_c2`, :func:`write_c2`, :func:`read_frames`, :func:`read_labels` — files (ours, APS 8-ID-I, .npy);
- :func:`correlate_file`, :func:`denoise_file`, :func:`fit_file`, :func:`report_file`, :func:`batch_denoise` —
  the functions behind the CLI's sub-commands.
"""

import os as _os
import sys as _sys

if _sys.argv and _os.path.basename(_sys.argv[0]).startswith("xpcs-denoise"):  # the console script starting
    import signal as _signal

    def _stopped_at_start_up(signum, frame):  # Ctrl-C or SIGTERM while torch loads: one line, no traceback
        _sys.stderr.write("xpcs-denoise: " + ("interrupted" if signum == _signal.SIGINT else "terminated") + "\n")
        _os._exit(130 if signum == _signal.SIGINT else 143)  # nothing written yet; cli.main() takes over after

    _signal.signal(_signal.SIGINT, _stopped_at_start_up)
    _signal.signal(_signal.SIGTERM, _stopped_at_start_up)

from .core.errors import XPCSInputError, XPCSNoContrastWarning

# Everything else loads on first use (as scikit-image does), so that ``import xpcs_denoise`` and
# ``xpcs-denoise --version/--help`` do not pay for torch, scipy or matplotlib. Module paths are relative to
# this package; the layers (core → io → nn → restoration → analysis → app) are described in the README.
_EXPORTS = {
    "nn.anomaly": ("anomaly_map",),
    "core.adaptive": ("AgeStage", "adaptive_age_smooth"),
    "core.badframes": ("find_bad_frames",),
    "core.correlation": ("one_time_from_two_time", "time_resolved_cuts", "two_time"),
    "nn.config": ("METHODS", "TrainConfig"),
    "nn.denoiser": ("Denoiser", "DenoiseResult", "anomaly_scores"),
    "restoration.denoise": ("denoise",),
    "nn.finetune": ("finetune",),
    "core.fitting": ("DiffusionFit", "FitResult", "cut_trust", "fit_diffusion", "fit_g2", "fit_rows", "g2_model",
                     "sigma_for_fit"),
    "io.formats": ("C2File", "read_c2", "read_frames", "read_labels", "write_c2"),
    "app.pipeline": ("batch_denoise", "correlate_file", "denoise_file", "finetune_file", "fit_file", "report_file"),
    "core.scaling": ("subsample_frames",),
    "core.simulation": ("SpeckleSeries", "simulate_q_rings", "simulate_speckle"),
    "analysis.uncertainty": ("TwoTimeFit", "CutFits", "cut_fits", "fit_two_time", "fit_denoised"),
    "analysis.calibration": ("FitCalibration",),
    "analysis.workflows": ("AgeingResult", "QDependenceResult", "ageing", "q_dependence"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

# Module paths of the flat layout before the layers (0.1): still importable, with a DeprecationWarning.
_MOVED = {
    "errors": "core.errors", "safety": "core.validation", "correlation": "core.correlation",
    "preprocessing": "core.scaling", "fitting": "core.fitting", "simulation": "core.simulation",
    "badframes": "core.badframes", "config": "nn.config", "model": "nn.model", "training": "nn.training",
    "finetune": "nn.finetune", "anomaly": "nn.anomaly", "denoising": "restoration.denoise",
    "baselines": "restoration.baselines", "uncertainty": "analysis.uncertainty", "workflows": "analysis.workflows",
    "evaluation": "analysis.evaluation", "plotting": "analysis.plotting", "pipeline": "app.pipeline",
    "report": "app.report", "cli": "app.cli",
}


class _MovedModules:
    """Finds ``xpcs_denoise.<old name>`` and hands back the module at its new place (one module object)."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix != __name__ or name not in _MOVED:
            return None
        import importlib.util
        import warnings

        new = f"{__name__}.{_MOVED[name]}"
        warnings.warn(f"{fullname} moved to {new}; the old path will go away", DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _MovedModules, origin=new)

    @staticmethod
    def create_module(spec):
        import importlib

        module = importlib.import_module(spec.origin)
        spec.loader_state = module.__spec__  # the import system sets __spec__ to this alias spec: put it back
        return module

    @staticmethod
    def exec_module(module):
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, type) and f.__name__ == "_MovedModules" for f in _sys.meta_path):
    _sys.meta_path.append(_MovedModules)


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'xpcs_denoise' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


__version__ = "0.1.0"

__all__ = [
    "XPCSInputError",
    "XPCSNoContrastWarning",
    "two_time",
    "one_time_from_two_time",
    "time_resolved_cuts",
    "find_bad_frames",
    "adaptive_age_smooth",
    "AgeStage",
    "fit_g2",
    "g2_model",
    "FitResult",
    "fit_diffusion",
    "DiffusionFit",
    "fit_rows",
    "sigma_for_fit",
    "cut_trust",
    "simulate_speckle",
    "simulate_q_rings",
    "SpeckleSeries",
    "Denoiser",
    "denoise",
    "METHODS",
    "DenoiseResult",
    "TrainConfig",
    "q_dependence",
    "ageing",
    "QDependenceResult",
    "AgeingResult",
    "subsample_frames",
    "C2File",
    "read_c2",
    "write_c2",
    "read_frames",
    "read_labels",
    "correlate_file",
    "denoise_file",
    "fit_file",
    "report_file",
    "batch_denoise",
    "finetune",
    "finetune_file",
    "fit_two_time",
    "fit_denoised",
    "FitCalibration",
    "cut_fits",
    "TwoTimeFit",
    "CutFits",
    "anomaly_scores",
    "anomaly_map",
    "__version__",
]
