"""Control guidance for the token LM: MTCV2M stage 2 (DCF + CGD), adapted to tokens.

Controls arrive as one ``[B, T, C]`` tensor (``controls/features.py``: beat 3, melody 13,
intensity 1, emotion 2, in ``CONTROL_ORDER``) aligned with the token steps, plus a
``[B, 4]`` presence mask. The path is:

1. **Per-control projections**: Linear(dim_c -> d_model / 4) each, concatenated to
   ``[B, T, d_model]``. An absent control contributes exact zeros (its output, bias
   included, is replaced by zeros), so "all absent" is the unconditional input.
2. **DCF** (dynamic conditional fusion), ``dcf_blocks`` blocks of
   ``x <- (intra + inter) * x`` with intra = patch mean -> 1x1 conv -> norm -> ReLU and
   inter = mean over patches -> 1x1 conv -> ReLU.
3. **CGD** (``mode="cgd"``): a ControlNet-style transformer block attached to LM layers
   0, e, 2e, ... (e = ``guidance_every``). It reads the *input* of its LM layer plus a
   zero-initialised Linear of the fused controls, and its output goes through a
   zero-initialised Linear and is added to that layer's output. At initialisation the
   LM's output is therefore exactly the output without guidance.
   ``mode="concat"`` instead adds the fused controls to the token embeddings (the
   simpler ablation).
4. **Attribute dropout** (training only): all controls dropped with ``p_global``, each
   one with ``p_each``, by zeroing presence. **Classifier-free guidance** over controls:
   :func:`cfg_logits`, unconditional = all presence 0.

Deviations from MTCV2M, and why:

- **Causal DCF pooling.** MTCV2M averages whole 1-s patches and pools over all patches of
  the 30-s clip. Since controls are known in advance, looking ahead *over controls* would
  not leak the target tokens; it is rejected for other reasons: (a) the global inter-patch
  mean makes every step depend on where the window ends, so a window continued from a
  carried prompt, or longer than the training windows, would see different fused values
  for the same steps (the same class of bug as MTCV2M's PTAA last window); (b) whole-patch
  pooling needs future controls at every decoding step. Here intra = mean of the steps
  from the patch start up to the current step, inter = mean of all steps up to the current
  one. The fused value at step t depends only on controls at steps <= t, so the KV-cached
  decode (which carries running sums in the cache) equals the full forward bit for bit in
  the pooling, and windows of any length agree. Look-ahead, when wanted, belongs in the
  control features themselves (e.g. the next beat's phase), which the data pipeline owns.
- **LayerNorm instead of BatchNorm** in the intra branch: batch statistics differ between
  training and decoding and between batch sizes (CFG doubles the batch).
- The 1x1 Conv1d is written as a per-step Linear (the same operation on ``[B, T, D]``).
- The CGD block has the LM block's own layout (self-attention, cross-attention when the LM
  has it, MLP); :meth:`ControlGuidance.copy_backbone` copies *all* of the attached LM
  block's weights (ControlNet's trainable copy; MTCV2M skipped the QKV projection). It is
  never called implicitly, so resuming cannot overwrite trained CGD weights.
- The zero input projection has no bias: with all controls absent the CGD block reads
  exactly the LM hidden state.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cuecraft.controls.features import CONTROL_DIMS
from cuecraft.errors import ParameterError

MODES = ("cgd", "concat")


class ZeroLinear(nn.Linear):
    """A Linear initialised (and reset) to zero; the LM's init skips it."""

    zero_init = True

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class ControlProjections(nn.Module):
    """Linear(dim_c -> d_model / n) per control, concatenated; absent controls give zeros."""

    def __init__(self, *, control_dims: Sequence[int], d_model: int):
        super().__init__()
        n = len(control_dims)
        if d_model % n:
            raise ParameterError(f"d_model = {d_model!r} must be divisible by the number of controls ({n})")
        self.control_dims = tuple(int(c) for c in control_dims)
        self.proj = nn.ModuleList(nn.Linear(c, d_model // n) for c in self.control_dims)
        self.register_buffer("dims", torch.tensor(self.control_dims), persistent=False)

    def forward(self, controls: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        # controls [B, T, C], presence [B, n] in {0, 1}. One block-diagonal matmul for all controls
        # (the same sums as one Linear each): fewer ops per decoded token.
        # Absent controls' inputs are zeroed first, so garbage (even NaN) in them cannot leak.
        given = presence.repeat_interleave(self.dims, dim=1)[:, None] > 0  # [B, 1, C]
        weight, bias = self._joined()
        out = F.linear(torch.where(given, controls, 0.0), weight, bias)  # [B, T, D]
        keep = presence.to(out.dtype).repeat_interleave(self.proj[0].out_features, dim=1)  # [B, D]
        return out * keep[:, None]

    def _joined(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The block-diagonal ``[D, C]`` weight and ``[D]`` bias; without gradients (decoding) they are
        kept and rebuilt only when a parameter changed (a load or an in-place edit bumps its version)."""
        def build():
            return torch.block_diag(*(proj.weight for proj in self.proj)), torch.cat([proj.bias for proj in self.proj])

        if torch.is_grad_enabled():  # training needs the graph through the parameters
            return build()
        key = tuple((p.data_ptr(), p._version) for proj in self.proj for p in (proj.weight, proj.bias))
        if getattr(self, "_joined_key", None) != key:
            self._joined_cache, self._joined_key = build(), key
        return self._joined_cache


class CausalDCFBlock(nn.Module):
    """One DCF weighting block with causal pooling: ``x <- (intra + inter) * x``.

    intra(t) = ReLU(LayerNorm(W_a * mean(x[patch_start(t) .. t])));
    inter(t) = ReLU(W_e * mean(x[0 .. t])). Patches are ``patch_len`` steps from step 0.
    """

    def __init__(self, *, d_model: int, patch_len: int):
        super().__init__()
        self.patch_len = patch_len
        self.intra = nn.Linear(d_model, d_model)  # 1x1 Conv1d
        self.intra_norm = nn.LayerNorm(d_model)
        self.inter = nn.Linear(d_model, d_model)  # 1x1 Conv1d

    def forward(self, x: torch.Tensor, *, start: int = 0, state: tuple | None = None):
        """Weighted ``x`` ``[B, T, D]`` for steps ``start ..``; ``state`` carries the running sums.

        Returns ``(y, new_state)``.
        """
        B, T, D = x.shape
        P = self.patch_len
        lead = start % P  # steps of the current patch already seen
        if T == 1 and state is not None:  # one decoding step: the running sums alone
            patch_carry, total_carry = state
            patch_sum = x[:, 0] + patch_carry if lead else x[:, 0]  # [B, D]
            total_sum = total_carry + x[:, 0]
            weight = torch.relu(self.intra_norm(self.intra(patch_sum / (lead + 1)))) \
                + torch.relu(self.inter(total_sum / (start + 1)))  # [B, D]
            return weight[:, None] * x, (patch_sum, total_sum)
        patch_carry, total_carry = state if state is not None else (x.new_zeros(B, D), x.new_zeros(B, D))
        n = lead + T + (-(lead + T) % P)
        padded = x.new_zeros(B, n, D)
        padded[:, lead:lead + T] = x
        if lead:
            padded[:, 0] = patch_carry
        patch_sum = padded.view(B, n // P, P, D).cumsum(dim=2).view(B, n, D)[:, lead:lead + T]  # [B, T, D]
        total_sum = total_carry[:, None] + x.cumsum(dim=1)  # [B, T, D]
        pos = torch.arange(start, start + T, device=x.device)
        intra_mean = (patch_sum / (pos % P + 1)[:, None]).to(x.dtype)  # [B, T, D]
        inter_mean = (total_sum / (pos + 1)[:, None]).to(x.dtype)  # [B, T, D]
        intra = torch.relu(self.intra_norm(self.intra(intra_mean)))
        inter = torch.relu(self.inter(inter_mean))
        return (intra + inter) * x, (patch_sum[:, -1], total_sum[:, -1])


class ControlGuidance(nn.Module):
    """Per-control projections, causal DCF, and CGD (or concat) guidance for :class:`TokenLM`.

    Pass it as ``TokenLM(guidance=...)``; the LM calls :meth:`attach`, which builds the CGD
    blocks with the LM's own block settings.

    Parameters
    ----------
    d_model : int
        The LM width (divisible by the number of controls).
    mode : {"cgd", "concat"}
        ControlNet-style guidance layers, or fused controls added to the token embeddings.
    control_dims : sequence of int
        Feature size of each control, in the order of the ``controls`` channels.
    patch_len : int
        DCF patch length in steps (MTCV2M: 1 s = 50 frames).
    dcf_blocks : int
        Number of DCF weighting blocks (0: projections only).
    guidance_every : int
        One CGD block per this many LM layers, attached at layers 0, e, 2e, ...
    p_global : float
        Training-only probability of dropping all controls of a sequence.
    p_each : float or sequence of float
        Training-only probability of dropping each control (one value, or one per control).
    """

    def __init__(self, *, d_model: int, mode: str = "cgd", control_dims: Sequence[int] = tuple(CONTROL_DIMS.values()),
                 patch_len: int = 16, dcf_blocks: int = 2, guidance_every: int = 4, p_global: float = 0.4,
                 p_each: float | Sequence[float] = (0.5, 0.4, 0.5, 0.5)):
        super().__init__()
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
        for name, value, low in (("patch_len", patch_len, 1), ("dcf_blocks", dcf_blocks, 0),
                                 ("guidance_every", guidance_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
        n = len(control_dims)
        p_each = (p_each,) * n if isinstance(p_each, (int, float)) else tuple(p_each)
        if len(p_each) != n:
            raise ParameterError(f"p_each needs one probability per control ({n}), got {p_each!r}")
        for p in (p_global, *p_each):
            if not 0.0 <= p <= 1.0:
                raise ParameterError(f"dropout probabilities must be in [0, 1], got {p!r}")
        self.d_model, self.mode, self.guidance_every = d_model, mode, guidance_every
        self.n_controls, self.n_features = n, sum(control_dims)
        self.p_global = float(p_global)
        self.register_buffer("p_each", torch.tensor(p_each, dtype=torch.float32), persistent=False)
        self.project = ControlProjections(control_dims=control_dims, d_model=d_model)
        self.dcf = nn.ModuleList(CausalDCFBlock(d_model=d_model, patch_len=patch_len) for _ in range(dcf_blocks))
        self.layers: tuple[int, ...] = ()
        self.blocks = nn.ModuleList()
        self.zero_in = nn.ModuleList()
        self.zero_out = nn.ModuleList()
        self._slot: dict[int, int] = {}

    def attach(self, lm: nn.Module) -> None:
        """Build the CGD blocks for ``lm`` (called by ``TokenLM.__init__``)."""
        if lm.d_model != self.d_model:
            raise ParameterError(f"guidance d_model = {self.d_model} does not match the LM's {lm.d_model}")
        if self.mode != "cgd" or len(self.blocks):
            return
        self.layers = tuple(range(0, lm.n_layers, self.guidance_every))
        for _ in self.layers:
            self.blocks.append(lm.make_block())
            self.zero_in.append(ZeroLinear(self.d_model, self.d_model, bias=False))
            self.zero_out.append(ZeroLinear(self.d_model, self.d_model))
        self._slot = {layer: k for k, layer in enumerate(self.layers)}

    def copy_backbone(self, lm: nn.Module) -> None:
        """Copy the attached LM blocks' weights into the CGD blocks (ControlNet's trainable copy).

        Call it once when starting guidance training from a trained LM, never on resume.
        """
        for k, layer in enumerate(self.layers):
            self.blocks[k].load_state_dict(lm.blocks[layer].state_dict())

    def drop_attributes(self, presence: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``presence`` ``[B, n]`` with whole-sequence (``p_global``) and per-control (``p_each``) drops."""
        B, n = presence.shape
        keep_all = torch.rand(B, 1, generator=generator, device=presence.device) >= self.p_global  # [B, 1]
        keep_each = torch.rand(B, n, generator=generator, device=presence.device) >= self.p_each  # [B, n]
        return presence * (keep_all & keep_each).to(presence.dtype)

    def fuse(self, controls: torch.Tensor | None, presence: torch.Tensor | None, *, batch: int, length: int,
             start: int = 0, cache=None, like: torch.Tensor | None = None) -> torch.Tensor:
        """Fused controls ``[B, T, D]`` for token steps ``start .. start + length``.

        Missing ``controls`` mean all absent; missing ``presence`` with controls means all present.
        Attribute dropout applies only in training mode.
        """
        dtype = like.dtype if like is not None else torch.float32
        device = like.device if like is not None else None
        if controls is None:
            controls = torch.zeros(batch, length, self.n_features, dtype=dtype, device=device)
            presence = torch.zeros(batch, self.n_controls, dtype=dtype, device=device)
        if controls.dim() != 3 or tuple(controls.shape) != (batch, length, self.n_features):
            raise ParameterError(f"controls must be [{batch}, {length}, {self.n_features}], got {tuple(controls.shape)}")
        if presence is None:
            presence = torch.ones(batch, self.n_controls, dtype=dtype, device=device)
        if presence.dim() != 2 or tuple(presence.shape) != (batch, self.n_controls):
            raise ParameterError(f"presence must be [{batch}, {self.n_controls}], got {tuple(presence.shape)}")
        presence = presence.to(dtype)
        if not bool(((presence == 0) | (presence == 1)).all()):
            raise ParameterError(f"presence must hold 0 or 1, got {presence[(presence != 0) & (presence != 1)][0].item()!r}")
        if self.training:
            presence = self.drop_attributes(presence)
        x = self.project(controls.to(dtype), presence)  # [B, T, D]
        for i, block in enumerate(self.dcf):
            key = f"dcf{i}"
            state = cache.state.get(key) if cache is not None else None
            x, new_state = block(x, start=start, state=state)
            if cache is not None:
                cache.state[key] = new_state
        return x

    def embed(self, x: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[B, T, D]`` plus the fused controls in "concat" mode (else unchanged)."""
        return x + fused if self.mode == "concat" else x

    def residual(self, layer: int, x_in: torch.Tensor, h_out: torch.Tensor, fused: torch.Tensor, *, rope=None,
                 memory=None, memory_mask=None, cache=None) -> torch.Tensor:
        """``h_out`` plus the CGD block attached at LM ``layer`` (``h_out`` itself if none is)."""
        k = self._slot.get(layer) if self.mode == "cgd" else None
        if k is None:
            return h_out
        g = self.blocks[k](x_in + self.zero_in[k](fused), rope=rope, memory=memory, memory_mask=memory_mask,
                           cache=cache, name=f"cgd{k}")  # [B, T, D]
        return h_out + self.zero_out[k](g)


def cfg_logits(model: nn.Module, tokens: torch.Tensor, *, controls: torch.Tensor | None,
               presence: torch.Tensor | None, scale: float, memory: torch.Tensor | None = None,
               memory_mask=None, uncond_memory: torch.Tensor | None = None, cache=None):
    """Classifier-free guidance over controls: ``uncond + scale * (cond - uncond)``.

    One forward over a doubled batch: rows ``:B`` conditional, rows ``B:`` with all presence 0
    (and ``uncond_memory`` instead of ``memory`` if given). With a cache, make it with
    ``model.new_cache(2 * B, max_len)`` and pass only the new steps.

    Returns
    -------
    logits : Tensor ``[B, K, T, V]``, or ``(logits, cache)`` when a cache is given.
    """
    B = tokens.shape[0]
    if cache is not None and cache.batch != 2 * B:
        raise ParameterError(f"CFG needs a cache of batch 2 * {B} = {2 * B}, got {cache.batch}")
    n = model.guidance.n_controls if model.guidance is not None else 0
    if controls is not None and presence is None:
        presence = controls.new_ones(B, n)
    if controls is not None:
        controls = torch.cat([controls, controls])  # [2B, T, C]
        presence = torch.cat([presence, torch.zeros_like(presence)])  # [2B, n]
    if memory is not None:
        memory = torch.cat([memory, memory if uncond_memory is None else uncond_memory])  # [2B, S, D]
    masks = memory_mask if memory_mask is None or isinstance(memory_mask, torch.Tensor) else list(memory_mask)
    if isinstance(masks, list):
        masks = [_double(m, B) for m in masks]
    else:
        masks = _double(masks, B)
    out = model(torch.cat([tokens, tokens]), controls=controls, presence=presence, memory=memory,
                memory_mask=masks, cache=cache)
    logits = out[0] if cache is not None else out  # [2B, K, T, V]
    guided = guide(logits, scale)
    return (guided, cache) if cache is not None else guided


def guide(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)`` from logits of a doubled batch (rows ``:B`` conditional)."""
    B = logits.shape[0] // 2
    cond, uncond = logits[:B], logits[B:]
    return uncond + scale * (cond - uncond)


def _double(mask: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """A memory mask for the doubled CFG batch (masks without a batch dimension broadcast)."""
    if mask is None or mask.dim() < 4 or mask.shape[0] == 1:
        return mask
    if mask.shape[0] != batch:
        raise ParameterError(f"memory_mask batch {mask.shape[0]} does not match tokens batch {batch}")
    return torch.cat([mask, mask])
