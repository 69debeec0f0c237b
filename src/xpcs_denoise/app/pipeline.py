"""File-to-file functions behind the CLI's sub-commands, for notebook users who want the same in three lines:

>>> from xpcs_denoise import pipeline
>>> pipeline.correlate_file("frames.h5", "rois.npy", "c2.h5")
>>> pipeline.denoise_file("c2.h5", "c2_denoised.h5")
>>> pipeline.report_file("c2_denoised.h5", "report/")

Every output is written atomically and never overwrites an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..analysis.uncertainty import CutFits, raw_cut_errors, recalibrate
from ..analysis.workflows import ageing_analysis
from ..core.badframes import (
    DEFAULT_THRESHOLD,
    apply_exclusion,
    bad_frame_lists,
    exclusion_mask,
    fill_excluded,
    find_bad_frames,
    frame_statistics,
    stored_exclusion,
    unusable_rows,
)
from ..core.correlation import one_time_from_two_time, time_resolved_cuts, two_time
from ..core.errors import XPCSInputError, XPCSNoContrastWarning
from ..core.fitting import FIT_STATUSES, _check_frame_time, cut_trust, fit_diffusion, fit_g2, fit_rows, fit_status
from ..core.scaling import flat_two_times, scale_parameters
from ..core.validation import (
    NOT_C2_SUFFIXES,
    check_int,
    check_output_file,
    check_output_not_input,
    check_seed,
    json_safe,
)
from ..core.window import check_step
from ..io.aps import read_qmap
from ..io.files import atomic_path, write_csv
from ..io.formats import OUTPUT_FORMATS, open_c2, output_handler, read_c2
from ..io.frames import read_frames, read_labels
from ..io.native import C2Writer
from ..nn.anomaly import finish_scores, flagged_share, merge_windows
from ..nn.config import WINDOW, pretrained_directory
from ..restoration.denoise import METHODS, denoise, resolve_method
from .report import _own_files, default_max_lag, whole_series_fit, write_report

__all__ = ["correlate_file", "denoise_file", "fit_file", "report_file", "batch_denoise"]


def _bar(iterable, progress: bool, desc: str, total=None, unit: str = "ROI"):
    """``iterable`` wrapped in a tqdm bar on stderr when ``progress`` (suppressed by the CLI's -q)."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False)


def correlate_file(frames_path, labels_path, output, *, frames_dataset=None, labels_dataset=None, q=None,
                   block_pixels=None, overwrite: bool = False, progress: bool = False, exclude=None,
                   bad_frame_threshold: float | None = None, allow_external: bool = False) -> dict:
    """2TCFs and 1TCFs of every q-ROI of a frame stack, written in our HDF5 format.

    Parameters
    ----------
    frames_path : HDF5 file, ``.npy`` file, or folder of TIFFs (frames[T, H, W], photon counts)
    labels_path : ROI label map (``.npy`` or HDF5), 0 = unused, 1..K = q-ROIs; an APS qmap file
        (``qmap/dynamic_roi_map``) gives its mask, and the q and φ of its labels, which are kept
    output : HDF5 file to write
    q : (K,) q values of the ROIs in Å⁻¹, optional (default: the qmap's)
    exclude : frames to exclude (their 2TCF rows and columns are NaN): ``"auto"`` (found by
        :func:`~xpcs_denoise.find_bad_frames` from the 2TCF and the frames' statistics), frame numbers, text
        like ``"12,40-45"``, or a boolean mask (T,) or (K, T). Stored per ROI in the ``excluded_frames`` attribute.
    bad_frame_threshold : robust z-score of ``"auto"`` (default :data:`~xpcs_denoise.badframes.DEFAULT_THRESHOLD`)

    Returns
    -------
    dict summary (output, n_rois, n_frames, excluded_frames (a list of frames per ROI), seconds)

    Notes
    -----
    Peak memory: :func:`~xpcs_denoise.correlation.two_time_memory_bytes` (the (K, T, T) float64 result and one
    pixel block); the file is written one ROI at a time (a float32 triangle, 2 T² bytes, at a time).
    """
    t0 = time.time()
    output = Path(output)
    check_output_not_input(output, frames_path, labels_path)
    if output.exists() and not overwrite:
        raise XPCSInputError(f"{output} exists; choose another output or pass overwrite=True")
    q = _checked_q(q)
    thr = DEFAULT_THRESHOLD if bad_frame_threshold is None else float(bad_frame_threshold)
    auto = isinstance(exclude, str) and exclude.strip().lower() == "auto"
    labels, info = read_qmap(labels_path, labels_dataset, allow_external=allow_external)
    present = info["labels"]
    if info["qmap"] and present.size and (present[0] != 1 or present[-1] != present.size):  # a qmap's gaps
        dense = np.zeros(int(labels.max()) + 1, dtype=np.int64)
        dense[present] = np.arange(1, present.size + 1)
        labels = dense[labels]  # correlated as 1..K; the file keeps the qmap's labels in "roi"
    if q is not None and q.size != int(labels.max()):
        raise XPCSInputError(f"{q.size} q value(s) for {int(labels.max())} ROI(s) in the label map; give one per ROI")
    if q is None:
        q = info["q"]
    # a Rigaku .bin does not say its frame size: the label map (one frame's shape) does
    shape = labels.shape if Path(frames_path).suffix.lower() == ".bin" and labels.ndim == 2 else None
    with read_frames(frames_path, frames_dataset, allow_external=allow_external, frame_shape=shape) as frames:
        if auto:
            # frame statistics first: a frame without photons has no 2TCF row, so it is excluded up front
            stats = frame_statistics(frames, labels, block_pixels=block_pixels)
            pre = find_bad_frames(stats=stats, threshold=thr)
            c2 = two_time(frames, labels, block_pixels=block_pixels, progress=progress,
                          exclude=pre if pre.any() else None)
            mask = find_bad_frames(c2, stats=stats, threshold=thr)
        else:
            c2 = two_time(frames, labels, block_pixels=block_pixels, progress=progress, exclude=exclude)
            mask = exclusion_mask(exclude, c2.shape[-1], c2.shape[0])
    k, n = c2.shape[:2]
    attrs = {"method": "none", "source_frames": str(frames_path), "source_labels": str(labels_path)}
    lists = bad_frame_lists(mask) if mask is not None else [[] for _ in range(k)]
    if mask is not None and mask.any():
        apply_exclusion(c2, mask, copy=False)
    if exclude is not None:
        attrs["excluded_frames"] = lists
        attrs["exclude_frames"] = "auto" if auto else "given"
        if auto:
            attrs["bad_frame_threshold"] = thr
    with C2Writer(output, k, n, q=q, phi=info["phi"], rois=present, attrs=attrs, overwrite=overwrite) as w:
        for i in _bar(range(k), progress, "write"):
            w.write(i, c2[i])
    return {"output": str(output), "n_rois": int(k), "n_frames": int(n), "excluded_frames": lists,
            "seconds": round(time.time() - t0, 2)}


def _checked_q(q):
    """q of the ROIs as a finite, positive float array (Å⁻¹), or None."""
    if q is None:
        return None
    try:
        q = np.asarray(q, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise XPCSInputError("q must be numbers in 1/Å, one per ROI") from None
    if not q.size or not np.all(np.isfinite(q)) or np.any(q <= 0):
        raise XPCSInputError(f"q must be finite and > 0 (1/Å), one per ROI; got {q[:5].tolist()}")
    return q


def _model_for(method: str, model) -> None:
    """A model folder goes with a model's method: given with a classical filter it would be ignored."""
    if model is not None and method not in ("lagnet", "cned"):
        raise XPCSInputError(f"model={model} applies to the lagnet and cned methods, not {method!r}; drop it")


def _warn_frame_time(given, stored, path) -> None:
    """Say so when a frame time given by the user replaces another one that the file records."""
    if given is not None and stored is not None and not np.isclose(given, stored, rtol=1e-6, atol=0):
        warnings.warn(f"frame time {given:g} s given replaces the {stored:g} s that {Path(path).name} records",
                      stacklevel=3)


def _lag_model(model):
    from ..restoration.denoise import _lag_model as lag_model  # defers torch

    return lag_model(model)


def _model(model):
    from ..nn.denoiser import Denoiser  # defers torch

    if model is None or str(model) == "pretrained":
        return Denoiser.pretrained()
    return Denoiser.from_directory(model)


def _calibrated_model(method: str, model, attrs: dict):
    """The model whose card calibrates fits of a file denoised by ``method``: :func:`_recorded_model`'s, loaded;
    None for other methods."""
    if method == "cned":
        return _model(_recorded_model(model, attrs))
    if method == "lagnet":
        return _lag_model(_recorded_model(model, attrs, card_name="lagnet_card.json"))
    return None


def _recorded_model(model, attrs: dict, card_name: str = "model_card.json"):
    """The model to follow a denoised file through: the one given, else the folder the file records when it still
    holds the weights that made the file (same SHA-256), else the shipped one (whose SHA-256 is then checked)."""
    if model is not None:
        return model
    folder, sha = str(attrs.get("model_dir", "") or ""), str(attrs.get("model_weights_sha256", "") or "")
    card = Path(folder) / card_name if folder else None
    if card is not None and card.is_file():
        try:
            if json.loads(card.read_text()).get("weights_sha256") == sha:
                return folder
        except (OSError, ValueError):
            pass
    return None


#: Output formats of :func:`denoise_file` (the writers of :data:`~xpcs_denoise.io.formats.C2_FORMATS`).
FORMATS = OUTPUT_FORMATS


#: Diagonal block (frames) of :func:`denoise_banded`.
BAND_BLOCK = 512


def denoise_banded(c2, method: str = "cned", *, model=None, seed: int = 0, step: int = 5, block: int = BAND_BLOCK,
                   anomaly: bool = False, **options):
    """Denoise one (N, N) 2TCF as :func:`~xpcs_denoise.denoising.denoise` does, in diagonal blocks.

    The patch methods (``cned``, ``pca``) change only the band of lags below the window size n (the sliding
    window, METHOD §4). For N > 3 ``block``, the contrast and baseline are taken from the whole matrix (Eq. 7),
    then overlapping diagonal blocks of about ``block + 2 n`` frames, aligned to the window grid of the whole
    matrix (starts on multiples of ``step``, ends ≡ N mod ``step``), are denoised with them, and each block's
    core rows are kept: every band pixel sees exactly the windows it sees in the whole matrix, with other lag-0
    replacement draws (seeded per block). Pixels outside the band keep their input values, as in the whole
    matrix. Peak memory is the input, the output and its spread plus one block, not ~10 N × N arrays.
    The image filters (gaussian, median, tv, bm3d) and small matrices run on the whole matrix.

    ``anomaly`` (cned only): also the anomaly scores of every window denoised, from the same ensemble pass
    (:func:`~xpcs_denoise.anomaly.finish_scores`; windows shared by neighbouring blocks averaged).

    Returns
    -------
    (denoised, spread), each (N, N) float64; with ``anomaly`` (denoised, spread, table or None).
    """
    c2 = np.asarray(c2, dtype=np.float64)
    n_big = c2.shape[-1]
    if method == "cned":
        from ..nn.denoiser import _pretrained  # defers torch

        model = model or _pretrained()
        size = model.size
    else:
        size = getattr(model, "size", WINDOW)
    want = bool(anomaly)
    anomaly = want and method == "cned"
    if method not in ("cned", "pca") or c2.ndim != 2 or n_big <= 3 * int(block) or not np.all(np.isfinite(c2)):
        if anomaly:
            res = model.denoise_full(c2, seed=seed, step=step, anomaly=True)
            return res.c2, res.std, res.anomaly
        out = denoise(c2, method, model=model, return_std=True, seed=seed, step=step, **options)
        return (*out, None) if want else out
    step, block = int(step), int(block)
    if step < 1:
        raise XPCSInputError(f"sliding-window step must be >= 1 frame; got {step}")
    beta, base = scale_parameters(c2, size)  # the whole matrix's Eq. 7 contrast and baseline
    out, spread = c2.copy(), np.zeros_like(c2)
    starts, dist, resid, noise, struct = [], [], [], [], []
    for b, c0 in enumerate(range(0, n_big, block)):
        c1 = min(n_big, c0 + block)
        s0 = max(0, c0 - size) // step * step
        e0 = min(n_big, c1 + size)
        e0 = min(n_big, e0 + (n_big - e0) % step)  # e0 ≡ N (mod step): the backward windows' grid
        if anomaly:
            res = model.denoise_full(c2[s0:e0, s0:e0], seed=seed + b, step=step, beta=beta, baseline=base,
                                     anomaly=True)
            m, sd = res.c2, res.std
            starts.append(res.anomaly["starts"] + s0)
            dist.append(res.anomaly["latent_distance"])
            resid.append(res.anomaly["residual"])
            noise.append(res.anomaly["noise"])
            struct.append(res.anomaly["structure"])
        else:
            m, sd = denoise(c2[s0:e0, s0:e0], method, model=model, return_std=True, seed=seed + b, step=step,
                            beta=beta, baseline=base, **options)
        out[c0:c1, s0:e0] = m[c0 - s0:c1 - s0]
        spread[c0:c1, s0:e0] = sd[c0 - s0:c1 - s0]
    if not want:
        return out, spread
    if not anomaly:
        return out, spread, None
    struct = np.concatenate(struct)
    u, d, r, nz, *cols = merge_windows(np.concatenate(starts), np.concatenate(dist), np.concatenate(resid),
                                       np.concatenate(noise), *struct.T)
    return out, spread, finish_scores(u, d, r, model.card, size, step, nz, np.stack(cols, axis=-1))


def denoise_file(input_path, output, *, method: str | None = None, model=None, dataset=None, uncertainty: bool = False,
                 seed: int = 0, step: int = 5, keep_raw: bool = True, frame_time: float | None = None,
                 overwrite: bool = False, exclude=None, bad_frame_threshold: float | None = None,
                 output_format: str | None = None, progress: bool = False, block: int = BAND_BLOCK,
                 allow_external: bool = False, anomaly: bool = True, **options) -> dict:
    """Denoise every ROI of a 2TCF file, one ROI at a time, and write the result.

    Parameters
    ----------
    input_path : ``.npy``, our HDF5, APS 8-ID-I HDF5 (either layout) or any HDF5 with ``dataset``
    output : output file; its format is ``output_format``, by default: ``.npy`` name → a (K, N, N) float64
        ``.npy`` of the denoised 2TCFs; APS 8-ID-I result input → an APS result file (:class:`APSResultWriter`:
        the input copied, maps replaced, raw kept in ``xpcs/twotime/correlation_map_raw``); otherwise our format
    method : ``"lagnet"`` (default without ``model``), ``"cned"`` (``"paper-2021"``) or a peer (see
        :data:`xpcs_denoise.denoising.METHODS`); default: the family of ``model``
    model : model folder for ``"lagnet"`` or ``"cned"`` (default: the shipped one); the file records its name,
        weights' SHA-256 and folder
    uncertainty : also store the ensemble's per-pixel spread (``c2_std``, our format only)
    seed, step : lag-0 replacement seed (the same for every ROI); sliding-window step (frames)
    keep_raw : store the input 2TCFs too (our format's ``c2_raw``; APS: ``correlation_map_raw``)
    frame_time : seconds per frame, stored as the output's ``frame_time`` attribute (default: the input's, e.g.
        from an APS 8-ID-I file) so that fits of the output give Γ in s⁻¹
    exclude : frames to exclude: ``"auto"`` (:func:`~xpcs_denoise.find_bad_frames` on the input 2TCF), frame
        numbers, text like ``"12,40-45"``, or a boolean mask (N,) or (K, N). Frames whose rows are NaN (excluded
        by ``correlate``) and those the input file lists are always excluded. Their rows and columns are filled by
        interpolation along the diagonals (:func:`~xpcs_denoise.badframes.fill_excluded`) before denoising; the
        denoised 2TCF stays finite there, its 1TCF ``g2`` leaves them out, and the file lists them per ROI
        (``excluded_frames``), which ``fit`` honours.
    bad_frame_threshold : robust z-score of ``"auto"``
    output_format : ``"aps"``, ``"ours"`` or ``"npy"``
    progress : a progress bar over ROIs on stderr
    block : diagonal block size (frames) of :func:`denoise_banded`
    anomaly : with cned and a model card holding ``latent_reference`` and ``anomaly_threshold``, store the
        anomaly scores of every window denoised, taken from the same ensemble pass (no second pass; about +4 % time):
        our format's group ``anomaly``, the APS file's ``xpcs/twotime/denoise_anomaly`` (datasets
        ``window_start`` (W,), ``score``, ``flagged``, ``latent_distance``, ``residual`` (K, W); attributes
        ``window``, ``step``, ``threshold``, the calibration; see :mod:`xpcs_denoise.anomaly`). Not stored with
        ``--format npy`` (an array of the denoised 2TCFs only) nor for the peer methods.

    Notes
    -----
    ROI labels (APS ``processed_bins``), q and φ of the input are kept. One ROI is in memory at a time, and the
    patch methods (cned, pca) work on diagonal blocks of it (:func:`denoise_banded`): peak memory is about
    3 × 8 N² bytes (input, output, spread) plus the model and the libraries (~300 MB), whatever K.
    """
    t0 = time.time()
    method = resolve_method(method, model)
    _model_for(method, model)
    output = check_output_file(output)
    if output.suffix.lower() in NOT_C2_SUFFIXES:
        raise XPCSInputError(f"output {output.name}: a denoised 2TCF file is HDF5 (.h5, .hdf) or .npy, not "
                             f"{output.suffix}; name it so")
    check_output_not_input(output, input_path)
    if output.exists() and not overwrite:
        raise XPCSInputError(f"{output} exists; choose another output or pass overwrite=True")

    seed = check_seed(seed)
    step = check_int(step, "step (frames)", 1)
    block = check_int(block, "block (frames)", 1)

    if frame_time is not None:
        frame_time = _check_frame_time(frame_time)
    with open_c2(input_path, dataset, allow_external=allow_external) as src:
        out = output_handler(output, src.source_format, output_format)
        fmt = out.name
        if uncertainty and "std" not in out.stores:
            raise XPCSInputError("uncertainty=True is stored in our format only; add output_format='ours'")
        thr = DEFAULT_THRESHOLD if bad_frame_threshold is None else float(bad_frame_threshold)
        excl = _Exclusion(src, exclude, thr)
        den = _model(model) if method == "cned" else None
        lag = _lag_model(model) if method == "lagnet" else None
        size = den.size if den is not None else WINDOW

        step = check_step(step, size)  # before any ROI is read or written
        attrs = {**{f"source_{k}": v for k, v in src.attrs.items() if _scalar(v)},
                 "method": method, "seed": int(seed), "window": size, "step": int(step),
                 "source_file": str(input_path), "source_format": src.source_format}
        if den is not None:
            attrs["model_name"] = den.card.get("name", "cned")
            attrs["model_weights_sha256"] = den.card.get("weights_sha256", "")
            attrs["model_members"] = den.n_members
            attrs["model_dir"] = str(den.directory or "")
        if lag is not None:  # the model that made the file: name, weights, folder
            attrs["model_name"] = lag.card.get("name", "lagnet")
            attrs["model_weights_sha256"] = lag.card.get("weights_sha256", "")
            attrs["model_dir"] = str(lag.directory or "")
        if options:
            attrs["options"] = json.dumps(options)
        stores_anomaly = "anomaly" in out.stores
        # The anomaly map is the paper ensemble's (its latent space is the reference of "what was learned"):
        # with the lag-band model the windows are scored by the shipped ensemble, the 2TCF denoised by the model.
        scorer = _model(None) if lag is not None and anomaly and stores_anomaly else den
        scores = _anomaly_attrs(scorer, size, step) if anomaly and scorer is not None and stores_anomaly else None
        if anomaly and den is not None and stores_anomaly and scores is None:
            attrs["anomaly_scores"] = ("not stored: the model card has no anomaly calibration (a fine-tuned model; "
                                       "run scripts/latent_reference.py and scripts/anomaly_threshold.py on it)")
        _warn_frame_time(frame_time, src.frame_time, input_path)
        frame_time = frame_time if frame_time is not None else src.frame_time
        if frame_time is not None:
            attrs["frame_time"] = float(frame_time)
        k_rois, n = src.n_rois, src.n_frames
        writer = out.writer(src, output, attrs=attrs, keep_raw=keep_raw, uncertainty=uncertainty, overwrite=overwrite)
        if scores is not None:
            writer.anomaly_attrs = scores
        skipped, first_error, flag_share = [], None, np.full(k_rois, np.nan)
        table = None
        with writer:
            for k in _bar(range(k_rois), progress, "denoise"):
                raw = src.c2(k)
                row = excl.roi(k, raw)
                c_in = raw if row is None else fill_excluded(raw, row)
                try:  # a 2TCF without contrast cannot be scaled (Eq. 5/7): kept unchanged, reported
                    res = denoise_banded(c_in, method, model=den if lag is None else lag, seed=seed, step=step,
                                         block=block, anomaly=scores is not None and lag is None, **options)
                    clean, spread, table = res if scores is not None and lag is None else (*res, None)
                    if scores is not None and lag is not None:
                        try:  # the ensemble scores what it can scale; a ROI without contrast has no scores
                            table = denoise_banded(c_in, "cned", model=scorer, seed=seed, step=step, block=block,
                                                   anomaly=True)[2]
                        except XPCSInputError as exc:
                            if "contrast" not in str(exc):
                                raise
                            table = None
                except XPCSInputError as exc:
                    if "contrast" not in str(exc):
                        raise
                    first_error = first_error or exc
                    skipped.append(k)
                    clean, spread, table = c_in, np.zeros_like(c_in), None
                if table is not None:
                    flag_share[k] = flagged_share(table["flagged"], table["score"])
                parts = {}  # what this format's writer stores besides the 2TCF
                if "anomaly" in out.stores:
                    parts["anomaly"] = table
                if "g2" in out.stores:
                    parts["g2"] = None if row is None else one_time_from_two_time(clean, exclude=row)
                if "raw" in out.stores:  # a file denoised before keeps its original raw 2TCFs (never the input)
                    parts["raw"] = (src.raw(k) if src.has_raw else raw) if keep_raw else None
                if "std" in out.stores:
                    parts["std"] = spread if uncertainty else None
                writer.write(k, clean, **parts)
                del parts
                del raw, c_in, clean, spread
            if skipped and len(skipped) == k_rois:  # nothing to denoise: the reason, as for one 2TCF
                raise first_error
            roi_labels = src.roi_labels()
            skipped = [int(roi_labels[k]) for k in skipped]  # ROIs are named by their label everywhere
            if skipped:
                warnings.warn(f"{len(skipped)} of {k_rois} 2TCFs have no contrast (mean lag-1 value not "
                              f"significantly above the baseline, or flat), e.g. ROI {skipped[:5]}: returned "
                              "unchanged, not denoised",
                              XPCSNoContrastWarning, stacklevel=2)
            writer.attrs["not_denoised_rois"] = json.dumps(skipped)
            lists = excl.lists()
            if excl.mask.any():
                writer.attrs["excluded_frames"] = lists
                writer.attrs["exclude_frames"] = "auto" if _is_auto(exclude) else "given"
    return {"input": str(input_path), "output": str(output), "method": method, "format": fmt,
            "n_rois": int(k_rois), "n_frames": int(n), "not_denoised_rois": skipped, "excluded_frames": lists,
            "anomalous_share": [None if not np.isfinite(v) else round(float(v), 4) for v in flag_share]
            if scores is not None else None, "roi_labels": [int(v) for v in roi_labels],
            "frame_time_s": frame_time, "seconds": round(time.time() - t0, 2)}


def _anomaly_attrs(den, size: int, step: int) -> dict | None:
    """Attributes of the stored anomaly group, or None when the model's card cannot score windows (no
    ``latent_reference`` or ``anomaly_threshold``)."""
    ref, cal = den.card.get("latent_reference"), den.card.get("anomaly_threshold")
    if not ref or not cal:
        return None
    return {"window": int(size), "step": int(step), "threshold": float(cal["threshold"]),
            "latent_scale": float(cal["latent_scale"]), "residual_scale": float(cal["residual_scale"]),
            "threshold_quantile": float(cal["quantile"]),
            "threshold_source": f"{cal['quantile']:.0%} quantile of the scores of {cal['n_crops']} "
                                + (cal["source"] if "source" in cal else
                                   f"held-out real crops ({cal['n_targets']} validation 2TCFs the ensemble never "
                                   "saw); scripts/anomaly_threshold.py; never from the user's data"),
            "map_rule": "pixel (t1, t2) gets the largest score of the windows [s, s + window)^2 covering it; "
                        "NaN outside (lags >= window)",
            "model_weights_sha256": den.card.get("weights_sha256", "")}


def _is_auto(exclude) -> bool:
    return isinstance(exclude, str) and exclude.strip().lower() == "auto"


class _Exclusion:
    """Frames to exclude from an open 2TCF file, ROI by ROI: ``exclude`` ("auto": found on the raw 2TCF), the
    frames the file lists, and the frames whose rows are NaN."""

    def __init__(self, src, exclude, threshold):
        self.src, self.threshold, self.auto = src, threshold, _is_auto(exclude)
        k, n = src.n_rois, src.n_frames
        self.given = None if self.auto else exclusion_mask(exclude, n, k)
        self.stored = stored_exclusion(src.attrs, k, n)
        self.mask = np.zeros((k, n), bool)

    def roi(self, k: int, c2) -> np.ndarray | None:
        """(N,) frames of ROI index ``k`` (its 2TCF ``c2``) to exclude, or None."""
        row = self.mask[k]
        if self.auto:
            ref = self.src.raw(k) if self.src.has_raw else c2
            row |= np.atleast_2d(find_bad_frames(ref, threshold=self.threshold))[0]
        for m in (self.given, self.stored):
            if m is not None:
                row |= m[k]
        row |= unusable_rows(c2)[0]
        if row.sum() > c2.shape[-1] - 2:
            raise XPCSInputError("the exclusion leaves fewer than 2 frames in a ROI; nothing to denoise or fit")
        return row.copy() if row.any() else None

    def lists(self) -> list:
        return bad_frame_lists(self.mask)


def _lists(mask, n_rois):
    return bad_frame_lists(mask) if mask is not None else [[] for _ in range(n_rois)]


def _exclusion(data, exclude, threshold):
    """(K, N) frames to exclude from a read 2TCF file: ``exclude`` ("auto": found on the raw 2TCF), the
    frames the file lists, and the frames whose rows are NaN; None when there is none."""
    k, n = data.c2.shape[0], data.c2.shape[-1]
    if _is_auto(exclude):
        mask = find_bad_frames(data.raw if data.raw is not None else data.c2, threshold=threshold)
    else:
        mask = exclusion_mask(exclude, n, k)
    mask = np.zeros((k, n), bool) if mask is None else mask
    stored = stored_exclusion(data.attrs, k, n)
    if stored is not None:
        mask |= stored
    mask |= unusable_rows(data.c2)
    if np.any(mask.sum(axis=1) > n - 2):
        raise XPCSInputError("the exclusion leaves fewer than 2 frames in a ROI; nothing to denoise or fit")
    return mask if mask.any() else None


def _scalar(v) -> bool:
    return isinstance(v, (str, int, float, bool, np.integer, np.floating))


def fit_file(input_path, output, *, dataset=None, fix_alpha: bool = False, fix_beta: bool = False,
             cut_width: int | None = None, max_lag: int | None = None, frame_time: float | None = None,
             weighted: bool = True, overwrite: bool = False, exclude=None,
             bad_frame_threshold: float | None = None, model=None, seed: int = 0,
             progress: bool = False, allow_external: bool = False) -> dict:
    """Eq. 3 fits of each ROI's 1TCF (or of its time-resolved cuts) → CSV and JSON (values, errors, status).

    Parameters
    ----------
    fix_alpha : hold α = 1 (simple exponential)
    fix_beta : hold β at the data's β*(lag = 1) (Eq. 7), per ROI (biased low on series of up to 100 frames:
        warned)
    cut_width : fit the cuts of this width (frames) at every age instead of the whole-series 1TCF
    max_lag : lags fitted (frames); default: all up to 100 frames, else the first half (or 49 for cuts)
    frame_time : seconds per frame (default: the file's, e.g. APS 8-ID-I; else Γ stays in frames⁻¹)
    weighted : weight 1TCF points by their standard error from the 2TCF (whole-series fits; cuts are
        unweighted)
    output : ``.csv`` path; a ``.json`` with the same rows is written beside it (an output ending in ``.json``
        is the JSON, with the CSV beside it). Non-finite numbers are ``null`` in the JSON. Columns ``roi`` (the
        input's label: APS ``processed_bins``, qmap label), ``q`` (Å⁻¹), ``phi`` (degrees; NaN without φ bins), ...
    progress : a progress bar over the ROIs' cuts on stderr
    exclude : frames left out of the 1TCFs and cuts that are fitted: ``"auto"``
        (:func:`~xpcs_denoise.find_bad_frames` on the file's raw 2TCF), frame numbers, text like ``"12,40-45"``,
        or a boolean mask (N,) or (K, N); the frames the file lists (``excluded_frames``) and those whose rows
        are NaN are always left out. The JSON lists them per ROI.
    bad_frame_threshold : robust z-score of ``"auto"``
    model : model folder of a file denoised by ``cned`` (default: the shipped ensemble; it must be the model
        that denoised the file, checked by its SHA-256)
    seed : recorded with the fits

    Returns
    -------
    dict summary; with q known and a whole-series fit, ``diffusion``: Γ = D q² of the converged ROIs.

    Notes
    -----
    Whole-series fits come from :func:`~xpcs_denoise.uncertainty.fit_denoised` (the same as ``report`` and
    :func:`~xpcs_denoise.uncertainty.fit_two_time`): Γ's standard error is calibrated per path from the
    calibration stored beside the weights of the model the file records (raw files: the raw fits'); ``path`` says
    per ROI what was fitted, ``lag_range`` which lags. A denoised file without its raw 2TCF is fitted as it is,
    with a warning that its errors are the fit's alone.
    """
    output = Path(output)
    if output.suffix.lower() == ".json":  # the format follows the suffix: never CSV text in a .json file
        json_path, output = output, output.with_suffix(".csv")
    else:
        json_path = output.with_suffix(".json")
    for p in (output, json_path):
        check_output_not_input(p, input_path)
        if p.exists() and not overwrite:
            raise XPCSInputError(f"{p} exists; choose another output or pass overwrite=True")
    if cut_width is not None:
        cut_width = check_int(cut_width, "cut_width (frames)", 1)
    if max_lag is not None:
        max_lag = check_int(max_lag, "max_lag (frames)", 1)
    if frame_time is not None:
        frame_time = _check_frame_time(frame_time)
    data = read_c2(input_path, dataset, allow_external=allow_external)
    _warn_frame_time(frame_time, data.frame_time, input_path)
    if frame_time is None:
        frame_time = data.frame_time
    c2, n = data.c2, data.c2.shape[-1]
    labels = data.rois if data.rois is not None else np.arange(1, c2.shape[0] + 1)  # the input's ROI labels
    if cut_width is not None and cut_width > n:
        raise XPCSInputError(f"cut_width={cut_width} is wider than the {n}-frame 2TCF; use 1..{n}")
    if cut_width is not None and max_lag is not None and max_lag > n - 1:
        raise XPCSInputError(f"max_lag={max_lag} reaches beyond the {n}-frame 2TCF's cuts; use 1..{n - 1}")
    mask = _exclusion(data, exclude, DEFAULT_THRESHOLD if bad_frame_threshold is None else bad_frame_threshold)
    if mask is not None:
        c2 = apply_exclusion(c2, mask)
    flat = flat_two_times(c2)
    if flat.all():
        raise XPCSInputError(f"{input_path}: every 2TCF is flat (constant): no contrast, nothing to fit")
    fix = {"alpha": 1.0} if fix_alpha else {}
    rows, diffusion = [], None
    age_cols = {"age_unit": "frames"}
    if cut_width is None:
        lag_max = max_lag or default_max_lag(n)
        if fix_beta:
            fix["beta"] = _beta_or_nan(c2)
            if n <= 100:  # a short series, all of whose lags are fitted (default_max_lag)
                # Eq. 7 on a short series: C∞* from its longest lags sits above the baseline where the decay has
                # not finished, and lag 1 has already decayed for fast ones (simulated 50-frame crops: median
                # β* 0.71 β; Γ 0.01–0.03 frames⁻¹ +73 % raw, +28 % denoised, against +4 / +2 % with β free)
                warnings.warn(f"β held at β*(lag = 1) of a series of {n} frames (≤ 100): β* of a short "
                              "series is biased low (simulated 50-frame crops: 0.71 β; Γ too high where the decay "
                              "does not finish within it); fitting β free is more accurate", stacklevel=2)
        method = str(data.attrs.get("method", "none"))
        raw = data.raw if data.raw is None or mask is None else apply_exclusion(data.raw, mask)
        fit, extra = whole_series_fit(c2, method=method, raw=raw,
                                      model=_calibrated_model(method, model, data.attrs) if raw is not None else None,
                                      model_sha256=str(data.attrs.get("model_weights_sha256", "")) or None,
                                      max_lag=lag_max, fix=fix, frame_time=frame_time, weighted=weighted, seed=seed)
        q_col = np.array([_q(data.q, k) for k in range(c2.shape[0])])
        phi_col = np.array([_q(data.phi, k) for k in range(c2.shape[0])])
        rows = fit_rows(fit, labels, index_name="roi",
                        columns={"q": q_col, "phi": phi_col, "age": float("nan"), **age_cols, **extra})
        if fix_beta:
            for k in np.flatnonzero(~np.isfinite(fix["beta"])):
                rows[k]["message"] = "no positive beta*(lag=1) to fix (lag-1 values at or below the baseline)"
        for k in np.flatnonzero(flat):  # a constant 2TCF: nothing to fit, whatever the optimiser returned
            rows[k].update({c: float("nan") for c in ("gamma", "gamma_err", "beta", "beta_err", "baseline",
                                                       "baseline_err", "alpha", "alpha_err", "redchi") if c in rows[k]})
            rows[k].update(success=False, message="flat 2TCF: no contrast, nothing to fit")
        if data.q is not None:
            ok = fit.success & ~fit.at_bound & ~flat
            try:
                diffusion = fit_diffusion(data.q, np.where(ok, fit.gamma, np.nan),
                                          np.where(ok, fit.gamma_err, np.nan), gamma_unit=fit.gamma_unit).to_dict()
            except XPCSInputError as exc:
                diffusion = {"error": str(exc)}
    else:
        method = str(data.attrs.get("method", "none"))
        # A denoised file's cuts carry the raw cuts' errors where it holds its raw 2TCF (raw_cut_errors)
        raw = None if method == "none" or data.raw is None else (
            data.raw if mask is None else apply_exclusion(data.raw, mask))
        if method != "none" and raw is None:
            warnings.warn(f"the {method} 2TCFs come without their raw 2TCFs (keep them when denoising): their cuts' "
                          "errors are the plain fits' own and understate the uncertainty", stacklevel=2)
        lag_max = max_lag or min(int(data.attrs.get("window", WINDOW)) - 1, n - 1)  # the denoised band

        def cuts(m):  # β fixed: the Eq. 7 estimate β*(lag = 1), as in the paper's ageing analysis; or β free
            return (ageing_analysis(m, width=int(cut_width), max_lag=lag_max, fix=fix, frame_time=frame_time)
                    if fix_beta else _cuts_free_beta(m, int(cut_width), lag_max, fix, frame_time))

        for k in _bar(range(c2.shape[0]), progress, "fit cuts"):
            if flat[k]:
                rows.append({"roi": int(labels[k]), "q": _q(data.q, k), "age": float("nan"), "success": False,
                             "message": "flat 2TCF: no contrast, nothing to fit"})
                continue
            try:
                r = cuts(c2[k])
                if raw is not None:
                    raw_cut_errors(r.fit, cuts(raw[k]).fit)
            except XPCSInputError as exc:  # e.g. no positive β* for this ROI: report it, fit the others
                rows.append({"roi": int(labels[k]), "q": _q(data.q, k), "phi": _q(data.phi, k),
                             "age": float("nan"), "success": False, "message": str(exc)})
                continue
            cols = {"roi": int(labels[k]), "q": _q(data.q, k), "phi": _q(data.phi, k), **age_cols}
            if frame_time is not None:
                cols["age_s"] = r.ages * frame_time
            rows += fit_rows(r.fit, r.ages, index_name="age", columns=cols)
    if not rows:
        raise XPCSInputError(f"{input_path}: nothing to fit")
    if data.anomaly is not None:  # share of the ROI's windows outside what the model learned (denoise, cned)
        share = dict(zip(labels.tolist(), flagged_share(data.anomaly["flagged"], data.anomaly["score"]).tolist(),
                         strict=True))
        for r in rows:
            r["anomalous_share"] = share.get(r.get("roi"), float("nan"))
    for r in rows:
        r["status"] = fit_status(r)  # rows made here (flat, failed ROIs) too
    lists = _lists(mask, c2.shape[0])
    units = {"gamma_unit": "1/s" if frame_time is not None else "1/frame", "q_unit": "1/Å", "age_unit": "frames",
             "frame_time_s": frame_time}
    meta = {"input": str(input_path), "fix_alpha": fix_alpha, "fix_beta": fix_beta, "cut_width": cut_width,
            "weighted": bool(weighted and cut_width is None), **units, "excluded_frames": lists, "rows": rows}
    if diffusion is not None:
        meta["diffusion"] = diffusion
    # Both files or neither: each is written to a temporary name first, and renamed only once both are complete.
    with atomic_path(json_path, overwrite=overwrite) as tmp_json, atomic_path(output, overwrite=overwrite) as tmp:
        write_csv(tmp, rows, overwrite=True)
        Path(tmp_json).write_text(json.dumps(json_safe(meta), indent=1, allow_nan=False) + "\n")
    ok = sum(bool(r["success"]) for r in rows)
    counts = {st: sum(r["status"] == st for r in rows) for st in FIT_STATUSES}
    out = {"input": str(input_path), "output": str(output), "json": str(json_path), "fits": len(rows),
           "successful": ok, "status_counts": counts, "excluded_frames": lists, **units}
    if diffusion is not None:
        out["diffusion"] = diffusion
    return out


def _beta_or_nan(c2):
    """β*(lag = 1) of each ROI (Eq. 7); NaN (that ROI's fit fails with a reason) where it is not positive."""
    out = np.full(c2.shape[0], np.nan)
    for k in range(c2.shape[0]):
        try:
            out[k] = scale_parameters(c2[k], 0)[0][0]
        except XPCSInputError:
            pass
    return out


def _cuts_free_beta(c2, width, max_lag, fix, frame_time=None):
    ages, lags, g = time_resolved_cuts(c2, width=width, max_lag=max_lag)
    fit = fit_g2(g, lags, fix=fix or None, frame_time=frame_time)
    fit.trusted = cut_trust(fit, g)
    return CutFits(ages, fit, float("nan"), frame_time=frame_time)  # β fitted per age, none held fixed


def _q(q, k):
    return float(q[k]) if q is not None else float("nan")


def _py(v):
    return v.item() if hasattr(v, "item") else v


class _LazyC2:
    """(K, N, N) view of one part ("c2", "raw") of an open :class:`~xpcs_denoise.io.C2Source`: ``[k]`` reads
    ROI index k, so a report holds one matrix at a time."""

    def __init__(self, src, part: str = "c2"):
        self.src, self.part = src, part
        self.shape = (src.n_rois, src.n_frames, src.n_frames)

    def __getitem__(self, k):
        return getattr(self.src, self.part)(int(k))


def report_file(input_path, out_dir, *, compare=(), method: str | None = None, model=None, dataset=None,
                seed: int = 0, step: int = 5, cut_width: int = 1, fix_alpha: bool = False,
                frame_time: float | None = None, weighted: bool = True, overwrite: bool = False,
                progress: bool = False, allow_external: bool = False) -> dict:
    """Report folder (PNG figures, tables, ``index.html``) for a 2TCF file.

    A file written by :func:`denoise_file` (with its raw 2TCFs, our format or APS) is reported as is; any other
    2TCF file is denoised with ``method`` first. ``compare`` adds peers (e.g. ``("gaussian", "median")``) on the
    raw data. ROI labels, q and φ of the input label the tables and figures. Denoised versions go to a
    temporary file beside the report, and the figures read one ROI at a time (the whole-series fits take whole
    arrays). ``frame_time`` (s per frame; default the file's) puts Γ
    in s⁻¹; ``weighted`` weights 1TCF points by their standard errors from the 2TCF. The report's whole-series
    fits are :func:`fit_file`'s (same function, same lags).
    ``out_dir`` must not be or contain the input; with ``overwrite`` only a report folder written before is
    replaced, file by file (see :func:`~xpcs_denoise.report.write_report`).
    """
    import tempfile

    if frame_time is not None:
        frame_time = _check_frame_time(frame_time)

    for m in compare:
        if m not in METHODS:
            raise XPCSInputError(f"unknown method {m!r} in compare; choose from {', '.join(METHODS)}")
    method = resolve_method(method, model)
    _model_for(method, model)
    out = Path(out_dir)
    resolved = out.resolve()
    if Path(input_path).resolve() == resolved or resolved in Path(input_path).resolve().parents:
        raise XPCSInputError(f"report folder {out_dir} is or contains the input {input_path}; choose another folder")
    seed = check_seed(seed)
    cut_width = check_int(cut_width, "cut_width (frames)", 1)
    if out.exists() and not overwrite:
        raise XPCSInputError(f"report folder {out} exists; choose another or pass overwrite=True")
    if out.exists():
        _own_files(out)  # --overwrite: only a report folder written before, checked before any work
    opened = []
    parent = out.parent if out.parent.is_dir() else Path(".")
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.work.", dir=parent) as work:
        try:
            src = open_c2(input_path, dataset, allow_external=allow_external)
            opened.append(src)
            if cut_width > src.n_frames:
                raise XPCSInputError(f"cut_width={cut_width} is wider than the {src.n_frames}-frame 2TCF; use "
                                     f"1..{src.n_frames}")
            provenance = {"input": str(input_path), "format": src.source_format, "seed": seed}

            def denoised(m):
                path = Path(work) / f"{m}.h5"
                denoise_file(input_path, path, method=m, model=model if m == method else None,
                             dataset=dataset,
                             seed=seed, step=step, keep_raw=False, output_format="ours", progress=progress,
                             allow_external=allow_external)
                opened.append(open_c2(path))
                return _LazyC2(opened[-1])

            window, den, anomaly, sha = WINDOW, None, None, None
            _warn_frame_time(frame_time, src.frame_time, input_path)
            ft = frame_time if frame_time is not None else src.frame_time
            if src.has_raw:
                raw, main_name = _LazyC2(src, "raw"), str(src.attrs.get("method", "denoised"))
                c2s = {"raw": raw, main_name: _LazyC2(src)}
                provenance.update({k: v for k, v in src.attrs.items() if _scalar(v)})
                window = int(src.attrs.get("window", WINDOW))
                if main_name in ("cned", "lagnet"):
                    anomaly = src.anomaly()
                if main_name in ("cned", "lagnet"):
                    den = _calibrated_model(main_name, model, src.attrs)
                    sha = str(src.attrs.get("model_weights_sha256", "")) or None  # checked as fit_file does
            else:
                c2s = {"raw": _LazyC2(src)}
                c2s[method] = denoised(method)
                provenance.update({k: v for k, v in opened[-1].attrs.items() if _scalar(v)
                                   and k in ("method", "window", "step", "model_weights_sha256")})
                window = int(opened[-1].attrs.get("window", WINDOW))
                den = _model(model) if method == "cned" else _lag_model(model) if method == "lagnet" else None
                anomaly = opened[-1].anomaly() if method in ("cned", "lagnet") else None
            for m in compare:
                if m not in c2s:
                    c2s[m] = denoised(m)
            index = write_report(out_dir, c2s, q=src.q, phi=src.phi, rois=src.roi_labels(),
                                 title=f"xpcs-denoise report: {Path(input_path).name}", provenance=provenance,
                                 cut_width=cut_width, fix={"alpha": 1.0} if fix_alpha else None,
                                 overwrite=overwrite, band=window, progress=progress, frame_time=ft,
                                 weighted=weighted, model=den, anomaly=anomaly, seed=seed,
                                 model_sha256=sha)
        finally:
            for o in opened:
                o.close()
    return {"input": str(input_path), "report": str(index), "methods": list(c2s)}


def _denoise_one(path, out, kwargs, skip_existing: bool = False):
    """One batch task: never raises, returns a summary row (so one bad file cannot stop the batch)."""
    t0 = time.time()
    out = Path(out)
    if skip_existing and out.exists():
        return {"input": str(path), "output": str(out), "status": "skipped", "error": "",
                "n_rois": 0, "seconds": 0.0}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        info = denoise_file(path, out, **kwargs)
        return {"input": str(path), "output": str(out), "status": "ok", "error": "",
                "n_rois": info["n_rois"], "seconds": round(time.time() - t0, 2)}
    except Exception as exc:  # noqa: BLE001 — reported in the summary, the batch goes on
        return {"input": str(path), "output": "", "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                "n_rois": 0, "seconds": round(time.time() - t0, 2)}


def batch_outputs(inputs, out_dir) -> list[Path]:
    """One output per input, ``<out_dir>/<path relative to the inputs' common folder>/<stem>_<suffix>_denoised.h5``
    (``scan.npy`` → ``scan_npy_denoised.h5``): the relative layout is kept, so ``a/scan.npy`` and ``b/scan.npy``
    never share an output, and a name depends on its input alone, never on the other inputs of the batch. The
    same file given twice, or two inputs whose names would still meet, are refused."""
    paths = [Path(p).resolve() for p in inputs]
    if not paths:
        raise XPCSInputError("no input files given")
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise XPCSInputError(f"{dup} is given more than once; give each input once")
    base = Path(os.path.commonpath([str(p.parent) for p in paths]))
    outs = []
    for p in paths:
        name = f"{p.stem}_{p.suffix.lstrip('.')}" if p.suffix else p.stem
        outs.append(Path(out_dir) / p.parent.relative_to(base) / f"{name}_denoised.h5")
    for o in outs:
        if outs.count(o) > 1:
            clash = [str(p) for p, q in zip(paths, outs, strict=True) if q == o]
            raise XPCSInputError(f"inputs {' and '.join(clash)} would both be written to {o}; rename one")
    return outs


def batch_denoise(inputs, out_dir, *, workers: int = 1, scheduler: str | None = None, progress: bool = False,
                  summary: bool = True, skip_existing: bool = False, **kwargs) -> list[dict]:
    """Denoise many files through Dask: a local cluster of ``workers`` processes (one thread each) or the
    running cluster at ``scheduler``. A file that fails (bad input, or a worker killed, e.g. for memory) is
    reported in its row and the others go on.

    Writes one output per input (:func:`batch_outputs`: the inputs' relative layout under ``out_dir``) and
    ``batch_summary.csv``/``.json``; returns the rows. ``skip_existing``: inputs whose output exists are
    skipped (status "skipped"), so a re-run finishes what an interrupted one left.
    """
    import dask
    from distributed import Client, LocalCluster, as_completed

    inputs = [str(p) for p in inputs]
    if not inputs:
        raise XPCSInputError("no input files given")
    workers = check_int(workers, "workers", 1, 256)
    if kwargs.get("seed") is not None:
        kwargs["seed"] = check_seed(kwargs["seed"])
    outputs = batch_outputs(inputs, out_dir)
    out = Path(out_dir)
    for p in inputs:
        if Path(p).resolve() == out.resolve():
            raise XPCSInputError(f"output folder {out} is the input {p}; choose another folder")
    if scheduler is not None and not re.fullmatch(r"(tcp|tls|inproc|ws|wss|ucx)://\S+|[\w.\-]+:\d+",
                                                  str(scheduler)):
        raise XPCSInputError(f"scheduler must be a Dask scheduler address like tcp://host:8786; got "
                             f"{scheduler!r}")
    if summary and not kwargs.get("overwrite") and not skip_existing and \
            any((out / f"batch_summary.{x}").exists() for x in ("csv", "json")):
        raise XPCSInputError(f"{out} holds the summary of an earlier batch; pass overwrite=True to replace it, or "
                             "skip_existing=True to finish that batch")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with dask.config.set({"distributed.worker.daemon": False}):
        if scheduler:
            try:
                client, cluster = Client(scheduler, timeout="20s"), None
            except (OSError, ValueError, TypeError) as exc:
                raise XPCSInputError(f"cannot connect to the Dask scheduler at {scheduler} "
                                     f"({' '.join(str(exc).split())[:150]}); check the address") from None
        else:
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
        try:
            futures = [client.submit(_denoise_one, p, str(o), kwargs, skip_existing, pure=False)
                       for p, o in zip(inputs, outputs, strict=False)]
            source = {f.key: p for f, p in zip(futures, inputs, strict=False)}
            rows = []
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(futures), desc="files", unit="file")
            for fut in as_completed(futures):
                try:
                    rows.append(fut.result())
                except Exception as exc:  # noqa: BLE001 — e.g. KilledWorker (out of memory): this file fails alone
                    rows.append({"input": source[fut.key], "output": "", "status": "failed",
                                 "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                                 "n_rois": 0, "seconds": round(time.time() - t0, 2)})
                if bar is not None:
                    bar.update()
            if bar is not None:
                bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    order = {p: i for i, p in enumerate(inputs)}
    rows.sort(key=lambda r: order[r["input"]])
    for o in outputs:  # a worker killed mid-write (e.g. for memory) cannot clean up its temporary file
        for tmp in o.parent.glob(f".{o.name}.*.tmp{o.suffix}"):
            tmp.unlink(missing_ok=True)
    if summary:
        write_csv(out / "batch_summary.csv", rows, overwrite=True)
        with atomic_path(out / "batch_summary.json", overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps({"seconds": round(time.time() - t0, 2), "workers": workers,
                                             "scheduler": scheduler, "files": rows}, indent=1) + "\n")
    return rows


def finetune_file(frames_path, labels_path, output, *, frames_dataset=None, labels_dataset=None, model=None,
                  epochs: int = 10, seed: int = 0, n_splits: int = 4, val_fraction: float = 0.25,
                  overwrite: bool = False, progress: bool = False) -> dict:
    """Fine-tune an ensemble on a frame series by Noise2Noise over pixel halves (:func:`finetune.finetune`).

    Writes a model folder (``model.safetensors``, ``model_card.json``) that ``denoise --model`` takes.
    """
    import shutil
    import tempfile

    from ..nn.finetune import finetune  # defers torch

    t0 = time.time()
    output = Path(output)
    if output.exists() and not overwrite:
        raise XPCSInputError(f"{output} exists; choose another output folder or pass overwrite=True")
    if output.exists() and not (output.is_dir() and (output / "model_card.json").is_file()):
        raise XPCSInputError(f"{output} exists and is not a model folder; refusing to replace it")
    shipped = pretrained_directory().resolve()
    if output.resolve() == shipped or shipped in output.resolve().parents:
        raise XPCSInputError(f"{output} is the shipped model's folder, which is never replaced; choose another "
                             "output folder")
    base = _model(model)
    labels = read_labels(labels_path, labels_dataset)
    with read_frames(frames_path, frames_dataset) as frames:
        if tuple(labels.shape) != tuple(frames.shape[1:]):
            raise XPCSInputError(f"the ROI label map is {labels.shape} but the frames are {tuple(frames.shape[1:])}; "
                                 "give the label map of this detector")
        frames = np.asarray(frames)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        tuned, card = finetune(frames, labels, tmp, model=base, epochs=epochs, seed=seed, n_splits=n_splits,
                               val_fraction=val_fraction, progress=progress)
        # Its fits' σ: the calibration measured again for the tuned weights (simulated crops of known Γ)
        card["calibration"] = recalibrate("cned", tuned, seed=seed).to_dict()
        with atomic_path(tmp / "model_card.json", overwrite=True) as t:
            Path(t).write_text(json.dumps(card, indent=2) + "\n")
        for f in tmp.glob("training_log.csv"):
            f.unlink()
        # mkdtemp makes a private (0700) folder: published with the modes the user's umask gives new folders
        umask = os.umask(0)
        os.umask(umask)
        if output.exists():
            # --overwrite replaces the model's own files, one by one; the user's other files stay
            for f in sorted(tmp.iterdir()):
                os.chmod(f, 0o666 & ~umask)
                os.replace(f, output / f.name)
            tmp.rmdir()
        else:
            os.chmod(tmp, 0o777 & ~umask)
            for f in tmp.iterdir():
                os.chmod(f, 0o666 & ~umask)
            tmp.replace(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ft = card["finetune"]
    before, after = np.mean(ft["val_cost_before"]), np.mean(ft["val_cost_after"])
    return {"output": str(output), "frames": ft["frames"], "rois": ft["rois"], "epochs": int(epochs),
            "val_cost_before": round(float(before), 6), "val_cost_after": round(float(after), 6),
            "seconds": round(time.time() - t0, 1)}
