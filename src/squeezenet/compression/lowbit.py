"""Uniform low-bit quantization below int8: 8/4/2-bit weights, 8/4-bit activations,
per-layer mixed precision, and quantization-aware training with learned step sizes.

Policies (stated once, here):

- **BatchNorm is folded first.** Every conv's BN is folded into its weights and bias
  (:func:`fold_batchnorm`), giving the same network built without BN; quantization and
  QAT then act on the folded weights, which are what inference runs. BN statistics are
  not re-estimated (there is no BN left to re-estimate).
- **Weights:** per output channel, symmetric, zero point 0, integers in
  [-2^(b-1), 2^(b-1)-1] (LSQ's Q_N, Q_P). The step per channel starts at the clipping,
  among 40 candidates, that least changes the channel's output on calibration images
  (:func:`calibrate_weight_steps`; ``--weight-clip mse``: its weights' squared error).
  Rounding is to nearest, or learned per weight (``--rounding adaround``, :func:`adaround`).
- **Activations:** the input of every conv but the first is quantized per tensor,
  unsigned (it follows a ReLU, a max pool or a sum of ReLUs), in [0, 2^b-1], step by MSE
  over calibration batches. The first conv sees the normalised image (signed) and is
  left in float.
- **First and last layers** (the stem conv and conv10) keep 8-bit weights in every
  setting, as HAWQ, LSQ and most of the literature do; they hold <2% of the weights here.
- **Pruning** (``--sparsity``): magnitude masks on the folded weights, held through QAT
  (a pruned weight is the integer 0); the .sqz stores such a layer sparse.
- **QAT:** LSQ (Esser et al. 2020, arXiv:1902.08153): the steps are parameters learned
  with the weights, the rounding passes gradients straight through, and the step's
  gradient is scaled by 1/sqrt(N * Q_P). The loss is distillation from the float model
  (:func:`squeezenet.train.distillation_loss`), not the labels, unless ``--no-distill``.

Why hand-written: torchao 0.18's QAT (``QATConfig``, ``IntxFakeQuantizeConfig``) swaps
``nn.Linear`` and ``nn.Embedding`` only and its range learning is marked prototype;
brevitas would be a second large dependency for one module. The fake-quant conv is
~40 lines; the mixed-precision allocation is a knapsack no library offers. AdaRound ships
in AIMET, another large dependency; here it is one function over im2col rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SqueezeNetError

WEIGHT_BITS = (2, 4, 8)
ACT_BITS = (4, 8)
EDGE_BITS = 8  # the stem conv and conv10


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """(Q_N, Q_P): x is clamped to [-Q_N, Q_P]."""
    return (1 << (bits - 1), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# Straight-through tricks written so that the forward value is exact: round(x) + (x - x) is round(x)
# in floating point, where (round(x) - x) + x can be an ulp off, and an ulp moves a value that sits on an
# activation's rounding boundary a whole step, which ONNX Runtime, running the file's integers, does not.

def _round_ste(x):
    """round(x) forward, gradient 1."""
    return x.detach().round() + (x - x.detach())


def _grad_scale(s, g: float):
    """s forward, gradient times g (LSQ's step-gradient scale)."""
    return s.detach() + (s * g - (s * g).detach())


def fake_quant(x, step, qn: int, qp: int, g: float = 1.0):
    """LSQ: round(clamp(x / s, -Q_N, Q_P)) * s with straight-through rounding."""
    s = _grad_scale(step.clamp_min(1e-12), g)
    return _round_ste(torch.clamp(x / s, -qn, qp)) * s


def mse_step(x: torch.Tensor, bits: int, signed: bool, per_channel: bool, candidates: int = 40) -> torch.Tensor:
    """The step minimising ||Q(x) - x||^2 among ``ratio * max|x| / Q_P`` for 40 ratios in
    [0.2, 1] (per output channel if ``per_channel``)."""
    qn, qp = qrange(bits, signed)
    flat = x.detach().float().reshape(x.shape[0], -1) if per_channel else x.detach().float().reshape(1, -1)
    best = best_step(flat, qn, qp, lambda err: (err ** 2).sum(dim=1), candidates)
    return best if per_channel else best[0]


def best_step(w: torch.Tensor, qn: int, qp: int, cost, candidates: int = 40) -> torch.Tensor:
    """Per row of ``w`` (rows, n), the step among ``r * max|w_row| / Q_P`` for ``candidates``
    ratios r in [0.2, 1] with the least ``cost(Q(w) - w)`` (a value per row); the first on ties."""
    amax = w.abs().amax(dim=1).clamp_min(1e-8)
    best_cost, best = None, None
    for r in torch.linspace(0.2, 1.0, candidates):
        s = (r * amax / qp)[:, None]
        c = cost(torch.clamp(torch.round(w / s), -qn, qp) * s - w)
        if best is None:
            best_cost, best = c, s[:, 0].clone()
        else:
            better = c < best_cost
            best_cost, best = torch.where(better, c, best_cost), torch.where(better, s[:, 0], best)
    return best


class QConv2d(nn.Conv2d):
    """A conv with fake-quantized weights (per channel) and, optionally, input (per tensor).
    With a pruning ``mask`` the weights are masked before quantizing, so a pruned weight is
    the integer 0 and gets no gradient: pruning holds through QAT without hooks."""

    def __init__(self, conv: nn.Conv2d, weight_bits: int, act_bits: int | None, mask: torch.Tensor | None = None):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
        self.weight_bits, self.act_bits = weight_bits, act_bits
        self.register_buffer("mask", None if mask is None else mask.to(torch.bool).clone())
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.w_step = nn.Parameter(mse_step(self.masked_weight(), weight_bits, True, True))
        self.a_step = nn.Parameter(torch.ones(())) if act_bits else None
        self.observing = False  # calibration: inputs pass unquantized

    def masked_weight(self):
        return self.weight if self.mask is None else self.weight * self.mask

    def quantized_weight(self):
        qn, qp = qrange(self.weight_bits)
        g = 1.0 / math.sqrt(self.weight[0].numel() * qp)
        return fake_quant(self.masked_weight(), self.w_step.view(-1, 1, 1, 1), qn, qp, g)

    def quantized_input(self, x):
        """The input as this conv multiplies it: through the activation quantizer, if any."""
        if self.a_step is None:
            return x
        qn, qp = qrange(self.act_bits, signed=False)
        return fake_quant(x, self.a_step, qn, qp, 1.0 / math.sqrt(x[0].numel() * qp))

    def quantized_bias(self):
        """The bias as an integer runtime adds it: on the grid of the input step times each
        channel's weight step (int32 in ONNX Runtime, whose QDQ bias quantization does this to
        every conv with quantized input and weights). Without quantized input, as it is.
        Straight-through rounding; the steps get no gradient from it."""
        if self.bias is None or self.a_step is None or self.observing:
            return self.bias
        s = (self.a_step.detach().clamp_min(1e-12) * self.w_step.detach().clamp_min(1e-12)).float()
        return torch.round(self.bias.detach() / s) * s + (self.bias - self.bias.detach())

    def forward(self, x):
        if not self.observing:
            x = self.quantized_input(x)
        return self._conv_forward(x, self.quantized_weight(), self.quantized_bias())

    def integers(self) -> tuple[np.ndarray, np.ndarray]:
        """(int8 array of the integer weights, fp32 step per output channel)."""
        qn, qp = qrange(self.weight_bits)
        s = self.w_step.detach().clamp_min(1e-12)
        q = torch.clamp(torch.round(self.masked_weight().detach() / s.view(-1, 1, 1, 1)), -qn, qp)
        return q.to(torch.int8).numpy(), s.float().numpy()


# ------------------------------------------------------------------ BN folding

BN_OF = {"conv": "bn", "squeeze": "squeeze_bn", "expand1x1": "expand1x1_bn", "expand3x3": "expand3x3_bn"}


def fold_batchnorm(model: nn.Module, name: str) -> nn.Module:
    """The same network built without BatchNorm, every BN folded into the conv before it
    (w' = w g / sqrt(v + eps), b' = (b - m) g / sqrt(v + eps) + beta). A SqueezeNet-family
    model; a model without BN is returned as a copy."""
    from ..factory import create_model

    kwargs = dict(getattr(model, "model_kwargs", {}))
    if not kwargs.get("batch_norm"):
        import copy

        return copy.deepcopy(model).eval()
    plain = create_model(name, **{**kwargs, "batch_norm": False}).eval()
    src = dict(model.named_modules())
    sd = {}
    for mname, m in plain.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        conv = src[mname]
        parent, _, leaf = mname.rpartition(".")
        bn = src.get(f"{parent}.{BN_OF.get(leaf, '')}") if leaf in BN_OF else None
        w = conv.weight.detach().double()
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if isinstance(bn, nn.BatchNorm2d):
            scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w, b = w * scale.view(-1, 1, 1, 1), (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
        sd[f"{mname}.weight"], sd[f"{mname}.bias"] = w.float(), b.float()
    plain.load_state_dict(sd, strict=True)
    plain.model_kwargs = {**kwargs, "batch_norm": False}
    return plain


# ------------------------------------------------------------------ building a quantized model

def conv_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def edge_layers(model: nn.Module) -> tuple[str, str]:
    names = conv_names(model)
    return names[0], names[-1]


def quantize_model(plain: nn.Module, bits: dict[str, int], act_bits: int | None,
                   masks: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A copy of the BN-free ``plain`` with every conv a :class:`QConv2d` at ``bits[name]``;
    activations at ``act_bits`` for every conv but the first (steps still to calibrate);
    the convs named in ``masks`` pruned by them (see :func:`pruning_masks`)."""
    import copy

    q = copy.deepcopy(plain)
    first = conv_names(q)[0]
    masks = masks or {}
    for name in conv_names(q):
        parent, _, leaf = name.rpartition(".")
        owner = q.get_submodule(parent) if parent else q
        conv = getattr(owner, leaf)
        setattr(owner, leaf, QConv2d(conv, bits[name], None if name == first else act_bits, masks.get(name)))
    return q


def pruning_masks(plain: nn.Module, sparsity: str | float) -> dict[str, torch.Tensor]:
    """Magnitude-pruning masks of the BN-folded convs (the weights inference runs), at the
    paper's per-layer densities (``'paper'``) or a global density; layers kept whole get none."""
    from .prune import compute_masks, density_plan

    masks = compute_masks(plain, density_plan(plain, sparsity))
    return {n: m for n, m in masks.items() if not bool(m.all())}


def uniform_bits(plain: nn.Module, weight_bits: int) -> dict[str, int]:
    first, last = edge_layers(plain)
    return {n: (EDGE_BITS if n in (first, last) else weight_bits) for n in conv_names(plain)}


@torch.no_grad()
def calibrate_activations(qmodel: nn.Module, batches: list[torch.Tensor]) -> None:
    """Each activation step by MSE over the conv's float inputs on ``batches``."""
    seen: dict[str, list] = {}
    hooks = []
    for name, m in qmodel.named_modules():
        if isinstance(m, QConv2d) and m.a_step is not None:
            hooks.append(m.register_forward_pre_hook(lambda mod, inp, n=name: seen.setdefault(n, []).append(
                inp[0].detach().flatten()[::7].clone())))
            m.observing = True
    qmodel.eval()
    try:
        for x in batches:
            qmodel(x)
    finally:
        for h in hooks:
            h.remove()
        for m in qmodel.modules():
            if isinstance(m, QConv2d):
                m.observing = False
    for name, m in qmodel.named_modules():
        if name in seen:
            m.a_step.data.copy_(mse_step(torch.cat(seen[name]), m.act_bits, signed=False, per_channel=False))


def im2col(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """The rows (N*H_out*W_out, C*k*k) that ``conv``'s weights, flattened, multiply."""
    x = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    return x.transpose(1, 2).reshape(-1, x.shape[1])


@torch.no_grad()
def patch_rows(plain: nn.Module, names: list[str], batches: list[torch.Tensor], rows: int = 8192,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """Per conv of ``names``, ``rows`` im2col rows (rows, C*k*k) of its input in the float
    network ``plain`` over ``batches``, sampled without replacement with ``seed`` (all of
    them when fewer)."""
    per_batch = max(1, rows // max(1, len(batches)))
    g = torch.Generator().manual_seed(seed)
    seen: dict[str, list] = {n: [] for n in names}

    def grab(name, conv):
        def hook(mod, inp):
            x = im2col(inp[0].float(), conv)
            seen[name].append(x if len(x) <= per_batch else x[torch.randperm(len(x), generator=g)[:per_batch]])
        return hook

    handles = [plain.get_submodule(n).register_forward_pre_hook(grab(n, plain.get_submodule(n))) for n in names]
    plain.eval()
    try:
        for x in batches:
            plain(x)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}


def output_step(w: torch.Tensor, x: torch.Tensor, bits: int, candidates: int = 40) -> torch.Tensor:
    """Per output channel of ``w``, the candidate step (as :func:`mse_step`'s) minimising
    ||X (w_c - Q(w_c))||^2 over the im2col rows ``x``. A channel's output depends on its own
    weights only, so the choice is exact per channel."""
    qn, qp = qrange(bits)
    w2 = w.detach().float().reshape(w.shape[0], -1)
    return best_step(w2, qn, qp, lambda err: ((x @ err.T) ** 2).sum(dim=0), candidates)


@torch.no_grad()
def calibrate_weight_steps(qmodel: nn.Module, plain: nn.Module, batches: list[torch.Tensor], rows: int = 8192,
                           candidates: int = 40, seed: int = 0) -> None:
    """Each quantized conv's weight step per output channel by the error of that channel's
    *output* on calibration inputs, not of its weights (:func:`output_step`, over ``rows``
    input patches of the float network ``plain``, :func:`patch_rows`). Grouped convs keep
    the weight-MSE step."""
    convs = {n: m for n, m in qmodel.named_modules() if isinstance(m, QConv2d) and m.groups == 1}
    x = patch_rows(plain, list(convs), batches, rows, seed)
    for name, m in convs.items():
        m.w_step.data.copy_(output_step(m.masked_weight(), x[name], m.weight_bits, candidates))


# ------------------------------------------------------------------ learned rounding

ADAROUND_ITERS = 1500
ADAROUND_ROWS = 2048  # im2col rows per step
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (AdaRound, eq. 23)


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def adaround_layer(w: torch.Tensor, step: torch.Tensor, qn: int, qp: int, xq: torch.Tensor, target: torch.Tensor,
                   bias: torch.Tensor | None, relu: bool, iters: int = ADAROUND_ITERS, rows: int = ADAROUND_ROWS,
                   reg: float = 0.01, mask: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """AdaRound (Nagel et al. 2020, arXiv:2004.10568) for one conv as a matrix product: the
    integer weights, each ``floor(w/s)`` or ``floor(w/s) + 1``, whose output on the im2col rows
    ``xq`` (rows, C*k*k: the quantized network's inputs) best matches ``target`` (rows, out:
    the float layer's output on the float network's inputs; asymmetric reconstruction),
    after the ReLU when ``relu``. Adam on the rounding variables V, h(V) the rectified
    sigmoid, the regulariser lambda * sum(1 - |2h - 1|^beta) with beta annealed 20 -> 2 after
    a 20% warm-up, lambda = ``reg``; the reconstruction error is summed over the output
    channels and averaged over rows. Returns the integers (float tensor shaped like ``w``)."""
    out_c = w.shape[0]
    w2, s = w.detach().float().reshape(out_c, -1), step.detach().float().reshape(-1, 1)
    base = torch.floor(w2 / s)
    rest = (w2 / s - base).clamp(0.01, 0.99)
    v = (-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)).requires_grad_(True)  # h(V) = the fraction at start
    keep = None if mask is None else mask.reshape(out_c, -1).float()
    b = None if bias is None else bias.detach().float()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([v], lr=1e-3)
    warm = int(0.2 * iters)

    def weights(h):
        q = torch.clamp(base + h, -qn, qp)
        return q if keep is None else q * keep

    for i in range(iters):
        idx = torch.randint(len(xq), (min(rows, len(xq)),), generator=g)
        h = rectified_sigmoid(v)
        y = xq[idx] @ (weights(h) * s).T
        if b is not None:
            y = y + b
        t = target[idx]
        if relu:
            y = F.relu(y)
        loss = ((y - t) ** 2).sum(1).mean()
        if i >= warm:
            beta = 20 + (2 - 20) * (i - warm) / max(1, iters - warm)
            loss = loss + reg * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return weights((v >= 0).float()).reshape(w.shape)  # h(V) >= 0.5 exactly where V >= 0


class _Enough(Exception):
    """Stops a forward pass once the wanted layer's input is seen."""


def layer_inputs(model: nn.Module, name: str, batches: list[torch.Tensor], index: list[torch.Tensor] | None = None,
                 quantize_input: bool = False):
    """The im2col rows (rows, C*k*k) of conv ``name``'s input over ``batches``: the rows at
    ``index`` (one tensor per batch) if given; with ``quantize_input`` (a :class:`QConv2d`),
    after the conv's own activation quantizer."""
    conv = model.get_submodule(name)
    got = []

    def hook(mod, inp):
        x = inp[0].float()
        got.append(im2col(mod.quantized_input(x) if quantize_input else x, conv))
        raise _Enough

    h = conv.register_forward_pre_hook(hook)
    model.eval()
    try:
        for x in batches:
            try:
                model(x)
            except _Enough:
                pass
    finally:
        h.remove()
    return got if index is None else [r[i] for r, i in zip(got, index)]


@torch.no_grad()
def adaround(qmodel: nn.Module, plain: nn.Module, batches: list[torch.Tensor], iters: int = ADAROUND_ITERS,
             rows: int = 16384, seed: int = 0) -> None:
    """Learned rounding for every (ungrouped) quantized conv, layer by layer in network
    order: each layer's inputs come from ``qmodel`` with the layers before it already
    rounded (so later layers correct earlier ones' error), its target from ``plain``. The
    rounded integers are written back as grid-exact weights, so :meth:`QConv2d.integers`
    and QAT start from them; the steps are kept. ``rows`` im2col rows per layer are sampled
    (the same positions for both networks). SqueezeNet's convs each feed a ReLU (conv10's
    only with ``head_relu``), which the reconstruction includes."""
    names = [n for n, m in qmodel.named_modules() if isinstance(m, QConv2d) and m.groups == 1]
    last = conv_names(qmodel)[-1]
    g = torch.Generator().manual_seed(seed)
    per = max(1, rows // max(1, len(batches)))
    for k, name in enumerate(names):
        m, ref = qmodel.get_submodule(name), plain.get_submodule(name)
        fp = layer_inputs(plain, name, batches)
        index = [torch.randperm(len(r), generator=g)[:per] for r in fp]
        xf = torch.cat([r[i] for r, i in zip(fp, index)])
        xq = torch.cat(layer_inputs(qmodel, name, batches, index, quantize_input=True))
        w = ref.weight.detach().float().reshape(ref.out_channels, -1)
        target = xf @ w.T + (ref.bias.detach().float() if ref.bias is not None else 0)
        relu = name != last or bool(getattr(plain, "head_relu", True))
        if relu:
            target = F.relu(target)
        qn, qp = qrange(m.weight_bits)
        with torch.enable_grad():
            q = adaround_layer(m.masked_weight(), m.w_step, qn, qp, xq, target, m.bias, relu, iters,
                               mask=m.mask, seed=seed + k)
        m.weight.data.copy_(q * m.w_step.detach().view(-1, 1, 1, 1))


# ------------------------------------------------------------------ mixed precision

@torch.no_grad()
def layer_sensitivity(plain: nn.Module, batches: list[torch.Tensor], choices=WEIGHT_BITS,
                      clip: str = "output", seed: int = 0) -> dict[str, dict[int, float]]:
    """The measured damage when one conv alone has its weights quantized at each bit
    width (the rest in float): the mean KL divergence of the quantized network's output
    from the float network's on ``batches`` (no labels needed). Each layer's steps are
    chosen as the quantized model's will be: by its output error (``clip='output'``,
    :func:`output_step`) or its weights' (``'mse'``)."""
    plain.eval()
    rows = patch_rows(plain, conv_names(plain), batches, seed=seed) if clip == "output" else {}
    ref = [F.log_softmax(plain(x), dim=1) for x in batches]

    def damage():  # a KL divergence is >= 0; float32 sums of near-equal terms can round below it
        n = sum(len(x) for x in batches)
        return max(0.0, sum(F.kl_div(F.log_softmax(plain(x), dim=1), r, log_target=True, reduction="sum").item()
                            for x, r in zip(batches, ref)) / n)

    out = {}
    for name in conv_names(plain):
        out[name] = {}
        conv = plain.get_submodule(name)
        w = conv.weight.data.clone()
        for b in choices:
            qn, qp = qrange(b)
            s = (output_step(w, rows[name], b) if clip == "output" and conv.groups == 1
                 else mse_step(w, b, True, True)).view(-1, 1, 1, 1)
            conv.weight.data.copy_(torch.clamp(torch.round(w / s), -qn, qp) * s)
            out[name][b] = damage()
        conv.weight.data.copy_(w)
    return out


def weight_bytes(params: int, channels: int, bits: int) -> int:
    """Bytes of one conv's weights at ``bits``: packed integers plus a fp32 step per channel."""
    return math.ceil(params * bits / 8) + 4 * channels


def allocate_bits(sizes: dict[str, tuple[int, int]], sensitivity: dict[str, dict[int, float]], budget: int,
                  fixed: dict[str, int], choices=WEIGHT_BITS, quantum: int = 16) -> dict[str, int]:
    """The bit width per layer minimising the summed sensitivity with the weights' bytes
    within ``budget`` (``sizes[name] = (params, channels)``): an exact 0/1 multiple-choice
    knapsack by dynamic programming over bytes in units of ``quantum`` (costs rounded up,
    so the answer never exceeds the budget). ``fixed`` layers keep their width."""
    fixed_cost = sum(weight_bytes(*sizes[n], b) for n, b in fixed.items())
    free = [n for n in sizes if n not in fixed]
    cap = (budget - fixed_cost) // quantum
    if cap < 0 or sum(math.ceil(weight_bytes(*sizes[n], min(choices)) / quantum) for n in free) > cap:
        least = fixed_cost + sum(weight_bytes(*sizes[n], min(choices)) for n in free)
        raise SqueezeNetError(f"a weight budget of {budget:,} bytes cannot hold this model; the smallest mixed "
                              f"allocation needs {least:,} bytes ({least / 1024:.1f} KB)")
    inf = float("inf")
    best = np.full(cap + 1, inf)
    best[0] = 0.0
    picks = []
    for n in free:
        nxt = np.full(cap + 1, inf)
        pick = np.zeros(cap + 1, dtype=np.int64)
        for b in choices:
            c = math.ceil(weight_bytes(*sizes[n], b) / quantum)
            if c > cap:
                continue
            cand = np.full(cap + 1, inf)
            cand[c:] = best[:cap + 1 - c] + max(0.0, sensitivity[n][b])
            better = cand < nxt
            nxt[better], pick[better] = cand[better], b
        best = nxt
        picks.append(pick)
    j = int(np.argmin(best))
    out = dict(fixed)
    for n, pick in zip(reversed(free), reversed(picks)):
        b = int(pick[j])
        out[n] = b
        j -= math.ceil(weight_bytes(*sizes[n], b) / quantum)
    return {n: out[n] for n in sizes}


def layer_sizes(model: nn.Module) -> dict[str, tuple[int, int]]:
    return {n: (m.weight.numel(), m.weight.shape[0]) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
