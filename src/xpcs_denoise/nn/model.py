"""The CNN encoder–decoder (CNN-ED) of the paper, as an ensemble of members evaluated in one batched pass.

Architecture (METHOD §3), per member, for an n×n input (n = 50):

    encoder: Conv2d(1→C, 1×1) + ReLU, Conv2d(C→C, 1×1) + ReLU, flatten (C·n²), Linear(C·n² → L)
    decoder: Linear(L → C·n²), reshape (C, n, n), ConvTranspose2d(C→C, 1×1) + ReLU, ConvTranspose2d(C→1, 1×1)

A 1×1 convolution is a per-pixel linear map, so every layer is a matrix product. All members share one set
of stacked parameter tensors with a leading member axis, and one call runs every member on every input.
Features are stored pixel-major (pixel, channel) rather than PyTorch's channel-major flattening; the two differ
only by a fixed permutation of the linear layers' weights (see :func:`to_reference_modules`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.defaults import WINDOW
from ..core.errors import XPCSInputError
from ..core.validation import check_memory
from ..io.files import atomic_path, file_sha256

__all__ = ["ModelConfig", "CNNEDEnsemble", "save_ensemble", "load_ensemble", "to_reference_modules"]

PARAM_NAMES = ("c1_w", "c1_b", "c2_w", "c2_b", "enc_w", "enc_b", "dec_w", "dec_b", "d1_w", "d1_b", "d2_w", "d2_b")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one CNN-ED member (defaults: the paper's)."""

    size: int = WINDOW
    channels: int = 10
    kernel: int = 1
    latent: int = 8

    def __post_init__(self):
        if self.kernel != 1:
            # Larger kernels did not help in the paper; the batched per-pixel implementation needs 1×1.
            raise XPCSInputError("only 1×1 kernels are implemented (the paper's choice)")
        if self.size < 2 or self.channels < 1 or self.latent < 1:
            raise XPCSInputError(f"invalid model configuration {self}")


class CNNEDEnsemble(nn.Module):
    """``n_members`` independent CNN-ED models with stacked parameters, run in one batched pass.

    ``forward(x)`` takes ``x`` of shape (B, n, n) (the same inputs for every member) or (M, B, n, n) (one
    batch per member) and returns (M, B, n, n).

    A 2TCF is symmetric and a 1×1 convolution maps pixel (i, j) and (j, i) alike, so the encoder's linear layer
    sees every off-diagonal feature twice; the model therefore works on the upper triangle (n(n+1)/2 pixels)
    and its output is symmetric by construction. This is the paper's network with the linear layers' weights
    tied across the diagonal (exactly: :func:`to_reference_modules` expands it), at half the cost.
    """

    def __init__(self, n_members: int = 1, config: ModelConfig | None = None, seed: int | None = 0):
        super().__init__()
        self.config = config or ModelConfig()
        n = self.config.size
        m, c, lat = n_members, self.config.channels, self.config.latent
        self.n_members = m
        self.n_tri = p = n * (n + 1) // 2
        f = c * p
        shapes = {
            "c1_w": (m, c), "c1_b": (m, c),
            "c2_w": (m, c, c), "c2_b": (m, c),
            "enc_w": (m, f, lat), "enc_b": (m, lat),
            "dec_w": (m, lat, f), "dec_b": (m, f),
            "d1_w": (m, c, c), "d1_b": (m, c),
            "d2_w": (m, c, 1), "d2_b": (m, 1),
        }
        for name in PARAM_NAMES:
            self.register_parameter(name, nn.Parameter(torch.empty(shapes[name])))
        self.reset_parameters(seed)
        iu = np.triu_indices(n)
        full_to_tri = np.zeros((n, n), dtype=np.int64)
        full_to_tri[iu] = np.arange(p)
        full_to_tri[iu[1], iu[0]] = np.arange(p)
        lag = iu[1] - iu[0]
        lag_matrix = np.zeros((p, n - 1), dtype=np.float32)
        for k in range(1, n):
            lag_matrix[lag == k, k - 1] = 1.0 / (n - k)
        # Eq. 8's image term is a mean over all n² pixels: off-diagonal triangle pixels count twice.
        pixel_weight = np.where(lag == 0, 1.0, 2.0).astype(np.float32) / n**2
        self.register_buffer("tri_flat", torch.as_tensor(iu[0] * n + iu[1]), persistent=False)
        self.register_buffer("full_from_tri", torch.as_tensor(full_to_tri.ravel()), persistent=False)
        self.register_buffer("lag_matrix", torch.as_tensor(lag_matrix), persistent=False)
        self.register_buffer("pixel_weight", torch.as_tensor(pixel_weight), persistent=False)

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = 0):
        """Xavier-uniform weights (as the paper), PyTorch's default uniform(±1/√fan_in) biases."""
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        c, lat, n = self.config.channels, self.config.latent, self.config.size
        f = c * n * n  # fans of the full (untied) network, so the scale of the weights is the paper's
        layers = [("c1_w", "c1_b", 1, c, c), ("c2_w", "c2_b", c, c, c), ("enc_w", "enc_b", f, lat, f),
                  ("dec_w", "dec_b", lat, f, lat), ("d1_w", "d1_b", c, c, c), ("d2_w", "d2_b", c, 1, 1)]
        for w, b, fan_in, fan_out, bias_fan in layers:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            getattr(self, w).uniform_(-bound, bound, generator=gen)
            getattr(self, b).uniform_(-1 / math.sqrt(bias_fan), 1 / math.sqrt(bias_fan), generator=gen)
        with torch.no_grad():
            # Tied encoder weights act on both (i, j) and (j, i): double them off the diagonal.
            self.enc_w.view(self.n_members, c, -1, lat).mul_(
                torch.as_tensor(self._tri_multiplicity(), dtype=self.enc_w.dtype)[None, None, :, None])

    def _tri_multiplicity(self) -> np.ndarray:
        iu = np.triu_indices(self.config.size)
        return np.where(iu[0] == iu[1], 1.0, 2.0)

    def to_triangle(self, x: torch.Tensor) -> torch.Tensor:
        """(…, n, n) → (…, n(n+1)/2) upper triangles (of the symmetric part)."""
        n = self.config.size
        flat = x.reshape(*x.shape[:-2], n * n)
        return 0.5 * (flat[..., self.tri_flat] + x.transpose(-1, -2).reshape(*x.shape[:-2], n * n)[
            ..., self.tri_flat])

    def to_full(self, tri: torch.Tensor) -> torch.Tensor:
        """(…, n(n+1)/2) → symmetric (…, n, n)."""
        n = self.config.size
        return tri[..., self.full_from_tri].reshape(*tri.shape[:-1], n, n)

    def encode_tri(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vectors (M, B, L) of triangles (B, P) or (M, B, P)."""
        m = self.n_members
        if x.dim() == 2:
            x = x[None]
        b = x.shape[1]
        # Channel-first (M, B, C, P): the 1×1 convolutions become (C×C)·(C×P) products.
        h = torch.relu(x[:, :, None, :] * self.c1_w[:, None, :, None] + self.c1_b[:, None, :, None])
        h = torch.relu(torch.matmul(self.c2_w.transpose(1, 2)[:, None], h) + self.c2_b[:, None, :, None])
        return torch.baddbmm(self.enc_b[:, None, :], h.reshape(h.shape[0], b, -1).expand(m, b, -1)
                             if h.shape[0] == 1 else h.reshape(m, b, -1), self.enc_w)

    def decode_tri(self, z: torch.Tensor) -> torch.Tensor:
        """Output triangles (M, B, P) from latent vectors (M, B, L)."""
        m, b = z.shape[:2]
        c = self.config.channels
        d = torch.baddbmm(self.dec_b[:, None, :], z, self.dec_w).reshape(m, b, c, self.n_tri)
        d = torch.relu(torch.matmul(self.d1_w.transpose(1, 2)[:, None], d) + self.d1_b[:, None, :, None])
        return torch.matmul(self.d2_w.transpose(1, 2)[:, None], d).squeeze(-2) + self.d2_b[:, None, :]

    def forward_tri(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_tri(self.encode_tri(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_full(self.forward_tri(self.to_triangle(x)))

    @torch.no_grad()
    def inference_weights(self) -> list[dict[str, torch.Tensor]]:
        """Per-member 2-D weights for fast inference, with the decoder's first 1×1 layer folded into its
        linear layer (no nonlinearity lies between them, so the fold is exact)."""
        c, p, lat = self.config.channels, self.n_tri, self.config.latent
        out = []
        for m in range(self.n_members):
            w1 = self.d1_w[m]  # (C_in, C_out)
            dec = torch.einsum("lip,io->lop", self.dec_w[m].reshape(lat, c, p), w1).reshape(lat, c * p)
            db = (torch.einsum("ip,io->op", self.dec_b[m].reshape(c, p), w1) + self.d1_b[m][:, None])
            out.append({
                "c1_w": self.c1_w[m][:, None].contiguous(), "c1_b": self.c1_b[m][:, None].contiguous(),
                "c2_wt": self.c2_w[m].T.contiguous(), "c2_b": self.c2_b[m][:, None].contiguous(),
                "enc_w": self.enc_w[m].contiguous(), "enc_b": self.enc_b[m].contiguous(),
                "dec_w": dec.contiguous(), "dec_b": db.reshape(-1).contiguous(),
                "d2_w": self.d2_w[m].T.contiguous(), "d2_b": self.d2_b[m].contiguous(),
            })
        return out

    @torch.no_grad()
    def predict_tri(self, x: torch.Tensor, weights: list | None = None, *, return_latent: bool = False):
        """Inference on triangles (B, P) → (M, B, P), member by member with plain 2-D matrix products
        (and the latent vectors (M, B, L) if ``return_latent``, for the anomaly scores at no extra pass).

        Faster than :meth:`forward_tri` on a CPU: the per-pixel 1×1 layers become (C×C)·(C×B·P) products
        and the decoder's 1×1 layer is folded into its linear layer. Same outputs to float32 rounding.
        """
        weights = weights or self.inference_weights()
        b, p, c = x.shape[0], self.n_tri, self.config.channels
        xf = x.reshape(1, b * p)
        outs, zs = [], []
        for w in weights:
            h = torch.relu(torch.addcmul(w["c1_b"], w["c1_w"], xf))  # (C, B·P)
            h = torch.relu(torch.addmm(w["c2_b"], w["c2_wt"], h))
            h = h.view(c, b, p).transpose(0, 1).reshape(b, c * p)
            z = torch.addmm(w["enc_b"], h, w["enc_w"])
            zs.append(z)
            d = torch.relu(torch.addmm(w["dec_b"], z, w["dec_w"])).view(b, c, p)
            outs.append(torch.matmul(w["d2_w"], d).view(b, p) + w["d2_b"])
        return (torch.stack(outs), torch.stack(zs)) if return_latent else torch.stack(outs)

    def one_time_tri(self, tri: torch.Tensor) -> torch.Tensor:
        """1TCF (lags 1..n−1) of (…, P) triangles, one matrix product."""
        return tri @ self.lag_matrix

    def cost_tri(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Eq. 8 per member on triangles: MSE of the image + MSE of the 1TCF (lags 1..n−1); shape (M,)."""
        img = ((out - target) ** 2) @ self.pixel_weight
        g = ((self.one_time_tri(out) - self.one_time_tri(target)) ** 2).mean(dim=-1)
        return (img + g).mean(dim=-1)

    def select(self, members) -> CNNEDEnsemble:
        """A new ensemble holding only the given member indices."""
        idx = torch.as_tensor(list(members), dtype=torch.long)
        new = CNNEDEnsemble(len(idx), self.config, seed=None)
        with torch.no_grad():
            for name in PARAM_NAMES:
                getattr(new, name).copy_(getattr(self, name)[idx])
        return new


def _state_tensors(model: CNNEDEnsemble) -> dict[str, torch.Tensor]:
    return {name: getattr(model, name).detach().contiguous().cpu() for name in PARAM_NAMES}


def save_ensemble(model: CNNEDEnsemble, directory: str | Path, card: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``model_card.json`` (with the weights' SHA-256) into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.safetensors"
    with atomic_path(weights, overwrite=True) as tmp:
        save_file(_state_tensors(model), str(tmp), metadata={"format": "xpcs-denoise-cnned-ensemble-v1"})
    card = dict(card or {})
    card["architecture"] = {"name": "CNN-ED", **asdict(model.config), "n_members": model.n_members}
    card["weights_file"] = weights.name
    card["weights_sha256"] = file_sha256(weights)
    with atomic_path(directory / "model_card.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return directory


def load_ensemble(directory: str | Path, *, verify: bool = True) -> tuple[CNNEDEnsemble, dict]:
    """Load an ensemble saved by :func:`save_ensemble` (safetensors, never pickle); check its SHA-256."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    card_path = directory / "model_card.json"
    if not card_path.is_file():
        raise XPCSInputError(f"no model_card.json in {directory}; point to a model directory made by training")
    card, arch, weights = _checked_card(directory, card_path)
    if not weights.is_file():
        raise XPCSInputError(f"model weights {weights} are missing; retrain or restore the model directory")
    if verify and file_sha256(weights) != card.get("weights_sha256"):
        raise XPCSInputError(
            f"model weights {weights} do not match the SHA-256 in the model card: the file was altered or "
            "corrupted; restore it or retrain"
        )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise XPCSInputError(f"cannot read model weights {weights}: {exc}") from exc
    config = ModelConfig(size=arch["size"], channels=arch["channels"], kernel=arch.get("kernel", 1),
                         latent=arch["latent"])
    model = CNNEDEnsemble(int(arch["n_members"]), config, seed=None)
    with torch.no_grad():
        for name in PARAM_NAMES:
            param = getattr(model, name)
            if name not in tensors or tuple(tensors[name].shape) != tuple(param.shape):
                raise XPCSInputError(f"model weights {weights} lack or mis-shape tensor {name!r}")
            if not torch.isfinite(tensors[name]).all():
                raise XPCSInputError(f"model weights {weights} hold NaN or Inf in {name!r}: the model is broken; "
                                     "retrain it or restore the weights")
            param.copy_(tensors[name])
    model.eval()
    _check_anomaly_card(card, model, card_path)
    return model, card


def _check_anomaly_card(card: dict, model: CNNEDEnsemble, card_path: Path) -> None:
    """The card's ``latent_reference`` and ``anomaly_threshold`` (not covered by the weights' SHA-256), checked
    once at loading: shapes that fit the ensemble, finite numbers, positive scales."""
    def positive(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0

    m, lat = model.n_members, model.config.latent
    ref = card.get("latent_reference")
    if ref is not None:
        try:
            mean = np.asarray(ref["mean"], dtype=np.float64)
            cov = np.asarray(ref["cov_inv"], dtype=np.float64)
            ok = (mean.shape == (m, lat) and cov.shape == (m, lat, lat) and np.isfinite(mean).all()
                  and np.isfinite(cov).all() and positive(ref["median_residual"]))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise XPCSInputError(f"{card_path}: latent_reference is malformed (needs mean ({m}, {lat}), cov_inv "
                                 f"({m}, {lat}, {lat}) and a median_residual > 0, all finite); run "
                                 "scripts/latent_reference.py again")
    cal = card.get("anomaly_threshold")
    if cal is not None:
        try:
            ok = (all(positive(cal[k]) for k in ("threshold", "latent_scale", "residual_scale"))
                  and positive(cal.get("quantile", 0.99)) and cal.get("quantile", 0.99) < 1)
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise XPCSInputError(f"{card_path}: anomaly_threshold is malformed (threshold, latent_scale and "
                                 "residual_scale finite and > 0, quantile in (0, 1)); run scripts/anomaly_threshold.py "
                                 "again")


#: Limits of a model card, checked before anything is allocated (the SHA-256 covers the weights, not the card).
CARD_MAX_BYTES = 1 << 20
CARD_LIMITS = {"size": (2, 512), "channels": (1, 256), "latent": (1, 4096), "n_members": (1, 1000)}


def _checked_card(directory: Path, card_path: Path) -> tuple[dict, dict, Path]:
    """(card, architecture, weights path) of a model card, validated: size, JSON text, schema and limits,
    the weights' memory estimate, and a ``weights_file`` inside ``directory``."""
    def bad(why):
        return XPCSInputError(f"model card {card_path} is unreadable ({why}); retrain or restore it")

    if card_path.stat().st_size > CARD_MAX_BYTES:
        raise bad(f"{card_path.stat().st_size} bytes, more than {CARD_MAX_BYTES}")
    try:
        card = json.loads(card_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise bad(" ".join(str(exc).split())[:120] or type(exc).__name__) from None
    if not isinstance(card, dict) or not isinstance(card.get("architecture"), dict):
        raise bad("no 'architecture' object")
    arch = card["architecture"]
    for key, (lo, hi) in CARD_LIMITS.items():
        value = arch.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise bad(f"architecture.{key} must be a whole number in {lo}..{hi}; got {value!r}")
    if arch.get("kernel", 1) != 1:
        raise bad(f"architecture.kernel must be 1; got {arch.get('kernel')!r}")
    name = card.get("weights_file", "model.safetensors")
    if not isinstance(name, str) or not name:
        raise bad(f"weights_file must be a file name; got {name!r}")
    weights = directory / name
    try:
        weights.resolve().relative_to(directory.resolve())
    except ValueError:
        raise XPCSInputError(f"model card {card_path}: weights_file {name!r} points outside the model folder; "
                             "refused (copy the weights into the folder)") from None
    m, c, lat, n = arch["n_members"], arch["channels"], arch["latent"], arch["size"]
    p = n * (n + 1) // 2
    # float32 parameters (encoder and decoder dominate: 2 M C P L) + their inference copies + the file's tensors
    check_memory(3 * 4 * m * (2 * c * p * lat + 2 * c * p + 3 * c * c), f"the model in {directory} ({m} members, "
                 f"size {n}, {c} channels, latent {lat})")
    return card, arch, weights


class _ReferenceCNNED(nn.Module):
    """One member as the paper builds it: Conv2d/ConvTranspose2d/Linear layers, one patch per call."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c, lat, n = config.channels, config.latent, config.size
        self.n, self.c = n, c
        self.conv1 = nn.Conv2d(1, c, 1)
        self.conv2 = nn.Conv2d(c, c, 1)
        self.enc = nn.Linear(c * n * n, lat)
        self.dec = nn.Linear(lat, c * n * n)
        self.deconv1 = nn.ConvTranspose2d(c, c, 1)
        self.deconv2 = nn.ConvTranspose2d(c, 1, 1)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        z = self.enc(h.flatten(1))
        d = self.dec(z).reshape(-1, self.c, self.n, self.n)
        return self.deconv2(torch.relu(self.deconv1(d)))


@torch.no_grad()
def to_reference_modules(model: CNNEDEnsemble) -> list[nn.Module]:
    """Each member as the paper's plain Conv2d/ConvTranspose2d network (input (B, 1, n, n)).

    The tied weights are expanded to the full n×n layout, so the outputs equal the ensemble's on symmetric
    inputs (every 2TCF). Used as the one-patch-per-call baseline in the benchmarks.
    """
    cfg = model.config
    c, n, p = cfg.channels, cfg.size, model.n_tri
    full = model.full_from_tri  # (n²,) triangle index of each full pixel
    split = torch.as_tensor(1.0 / model._tri_multiplicity(), dtype=torch.float32)
    refs = []
    for m in range(model.n_members):
        r = _ReferenceCNNED(cfg)
        r.conv1.weight.copy_(model.c1_w[m].reshape(c, 1, 1, 1))
        r.conv1.bias.copy_(model.c1_b[m])
        r.conv2.weight.copy_(model.c2_w[m].T.reshape(c, c, 1, 1))
        r.conv2.bias.copy_(model.c2_b[m])
        enc = (model.enc_w[m].reshape(c, p, -1) * split[None, :, None])[:, full, :]  # (C, n², L)
        r.enc.weight.copy_(enc.reshape(c * n * n, -1).T)
        r.enc.bias.copy_(model.enc_b[m])
        dec = model.dec_w[m].reshape(-1, c, p)[:, :, full]
        r.dec.weight.copy_(dec.reshape(-1, c * n * n).T)
        r.dec.bias.copy_(model.dec_b[m].reshape(c, p)[:, full].reshape(-1))
        r.deconv1.weight.copy_(model.d1_w[m].reshape(c, c, 1, 1))
        r.deconv1.bias.copy_(model.d1_b[m])
        r.deconv2.weight.copy_(model.d2_w[m].reshape(c, 1, 1, 1))
        r.deconv2.bias.copy_(model.d2_b[m])
        refs.append(r.eval())
    return refs
