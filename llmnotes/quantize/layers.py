"""Quantized layers: drop-in replacements for ``nn.Linear`` and ``nn.Embedding``.

Every quantized layer is a :class:`QuantizedLayer`: it stores codes of ``bits`` bits plus what
it takes to read them back, ``dequantize_weight()`` returns the float weight they stand for, and
``init_args()`` the constructor arguments that rebuild an empty layer of its shape (for loading).
The linear ones are :class:`QuantizedLinearBase`: ``in_features``, ``out_features``, ``bias``,
and a ``forward`` that approximates ``forward_reference``, ``F.linear(x, dequantize_weight(),
bias)``. Three formats:

* ``QuantizedLinear``: integer codes (8- or 4-bit, absmax or zero-point, per row or grouped);
  on a CPU its int8 and 4-bit layouts run integer kernels where they measure faster
  (``llmnotes.qkernels``, ``llmnotes.native``);
* ``NF4Linear``: QLoRA's NormalFloat-4 (Dettmers et al. 2023, arXiv:2305.14314);
* ``LLMInt8Linear``: LLM.int8() with 16-bit outlier columns (Dettmers et al. 2022,
  arXiv:2208.07339).

``QuantizedEmbedding`` stores a table in int8 rows and can serve as the tied output layer too.

Over 400 lines because it is the two base classes and the four layer classes that share one
kernel cache and one set of conventions (``init_args`` for saving, ``dequantize_weight`` for
exporting); each class reads on its own.
"""

from __future__ import annotations

import copy
import math
import weakref
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes.quantize.primitives import (NF4_CODE, _check_bits, absmax_quantize, dequantize, fp16_scale,
                                          nf4_quantize, pack_int4, unpack_int4, zeropoint_quantize)
from llmnotes.utils import tensor_stamp

KERNELS = ("auto", "fast", "native", "reference")

# layer -> {kernel name: (stamp of its tensors, packed kernel callable)}; weak keys so a dropped
# layer frees its packed copies, kept outside the module so deepcopy/pickle never see them
_PACKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_FAST: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # layer -> (key, chosen kernel or None)

# ---------------------------------------------------------------------------------------------
# 3. Quantized linear layers
# ---------------------------------------------------------------------------------------------


class QuantizedLayer(nn.Module):
    """The base of every quantized layer: codes of ``bits`` bits standing in for a float weight.

    ``isinstance(m, QuantizedLayer)`` is how to ask "is ``m`` quantized?". A subclass stores its
    codes as buffers and implements ``dequantize_weight`` and ``init_args``.
    """

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits  # width of one stored code (outliers or scales kept wider are extra)

    def dequantize_weight(self) -> torch.Tensor:
        """The float32 weight the codes stand for."""
        raise NotImplementedError(f"{type(self).__name__} must implement dequantize_weight()")

    def init_args(self) -> dict:
        """Constructor arguments that rebuild an empty layer of this shape (for loading)."""
        raise NotImplementedError(f"{type(self).__name__} must implement init_args()")


class QuantizedLinearBase(QuantizedLayer):
    """The base of every quantized ``nn.Linear`` replacement: (..., in_features) -> (..., out_features).

    Holds what all of them share: the shape and a float ``bias``. ``forward`` may take a faster
    route (integer kernels, quantized activations) but approximates ``forward_reference``.
    """

    def __init__(self, in_features: int, out_features: int, bits: int, bias: bool = True) -> None:
        super().__init__(bits)
        self.in_features, self.out_features = in_features, out_features
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantize, then an ordinary matmul."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize_weight().to(x.dtype), bias)


class QuantizedLinear(QuantizedLinearBase):
    """A linear layer whose weight is stored as 8- or 4-bit integer codes plus scales.

    Each output row is cut into groups of ``group_size`` input columns; each group has an
    fp16 scale (and, if asymmetric, a uint8 zero point). 4-bit codes are packed two per byte.
    The readable forward pass (``forward_readable`` / ``forward_reference``) dequantizes the
    weight and runs an ordinary matmul: correct, but it rebuilds a float weight on every call.
    On a CPU, per-row int8 and grouped 4-bit layers instead run integer kernels, PyTorch's
    (``llmnotes.qkernels``) or llmnotes' own for one-row inputs (``llmnotes.native``), when no
    gradient is needed and the kernel measures fastest for the layer's shape; ``kernel`` /
    ``set_kernel`` choose (``"auto"``, ``"fast"``, ``"native"``, ``"reference"``).
    NF4 and LLM.int8() have no such CPU kernel in PyTorch and always take the readable path.

    Build one with ``QuantizedLinear.from_linear(linear, bits, group_size, symmetric)`` or, for
    codes someone else computed (GPTQ), ``QuantizedLinear.from_codes``.
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 8, group_size: int | None = None,
                 symmetric: bool = True, bias: bool = True) -> None:
        _check_bits(bits)
        group_size = in_features if group_size is None else min(group_size, in_features)
        if in_features % group_size:
            raise ValueError(f"in_features={in_features} must be a multiple of group_size={group_size}")
        if bits == 4 and in_features % 2:
            raise ValueError(f"4-bit packing needs an even in_features, got {in_features}")
        super().__init__(in_features, out_features, bits, bias)
        self.group_size, self.symmetric = group_size, symmetric
        n_groups = in_features // group_size
        code_dtype = torch.int8 if (bits == 8 and symmetric) else torch.uint8
        width = in_features if bits == 8 else in_features // 2
        self.register_buffer("qweight", torch.zeros(out_features, width, dtype=code_dtype))
        self.register_buffer("scale", torch.ones(out_features, n_groups, dtype=torch.float16))
        self.register_buffer("zero", None if symmetric else torch.zeros(out_features, n_groups, dtype=torch.uint8))

    def extra_repr(self) -> str:
        kind = "absmax" if self.symmetric else "zero-point"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, {kind}, bias={self.bias is not None}")

    def init_args(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bits": self.bits,
                "group_size": self.group_size, "symmetric": self.symmetric, "bias": self.bias is not None}

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int,
                   group_size: int, bias: torch.Tensor | None) -> "QuantizedLinear":
        """Wrap ready-made codes (out, in) — signed for symmetric 8-bit, else unsigned — and
        per-group ``scale``/``zero`` (out, in // group_size)."""
        out_f, in_f = codes.shape
        layer = cls(in_f, out_f, bits, group_size, symmetric=zero is None, bias=bias is not None)
        if bits == 4:
            if zero is None:  # signed [-7, 7] → unsigned nibble by +8
                codes = codes.to(torch.int16) + 8
            layer.qweight.copy_(pack_int4(codes))
        else:
            layer.qweight.copy_(codes.to(layer.qweight.dtype))
        layer.scale.copy_(scale.to(torch.float16))
        if zero is not None:
            layer.zero.copy_(zero.to(torch.uint8))
        if bias is not None:
            layer.bias.data.copy_(bias.detach().float())
        return layer.to(codes.device)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, group_size: int | None = None,
                    symmetric: bool = True) -> "QuantizedLinear":
        """Round-to-nearest quantization of ``linear.weight`` (out, in), group by group."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        gs = linear.in_features if group_size is None else min(group_size, linear.in_features)
        if linear.in_features % gs:
            raise ValueError(f"group_size={group_size} must divide in_features={linear.in_features}")
        # Round the scales to fp16 *before* computing the codes, so the codes match the stored
        # scales and the half-step error bound holds for what is actually kept.
        if symmetric:
            _, s = absmax_quantize(w, bits, group_size=gs)
            s = fp16_scale(s)
            qmax = 2 ** (bits - 1) - 1
            codes = torch.round(w.float() / s.repeat_interleave(gs, -1)).clamp(-qmax, qmax)
            return cls.from_codes(codes, s, None, bits, gs, linear.bias)
        _, s, _ = zeropoint_quantize(w, bits, group_size=gs)
        s = fp16_scale(s)
        lo = w.float().reshape(w.shape[0], -1, gs).amin(-1).clamp(max=0)
        z = torch.round(-lo / s).clamp(0, 2 ** bits - 1)  # the zero point for the stored scale
        codes = (torch.round(w.float() / s.repeat_interleave(gs, -1)) + z.repeat_interleave(gs, -1))
        codes = codes.clamp(0, 2 ** bits - 1)
        return cls.from_codes(codes, s, z, bits, gs, linear.bias)

    def codes(self) -> torch.Tensor:
        """Integer codes (out, in) as stored (unpacked), int16 to hold any of them."""
        c = unpack_int4(self.qweight) if self.bits == 4 else self.qweight
        return c.to(torch.int16)

    def _offset(self) -> torch.Tensor | int:
        if not self.symmetric:
            return self.zero.to(torch.int16).repeat_interleave(self.group_size, -1)
        return 8 if self.bits == 4 else 0  # 4-bit symmetric codes were shifted by +8 to pack

    def dequantize_weight(self) -> torch.Tensor:
        """The float32 weight (out, in) the codes stand for (vectorized)."""
        scale = self.scale.float().repeat_interleave(self.group_size, -1)
        return (self.codes() - self._offset()).float() * scale

    def dequantize_weight_reference(self) -> torch.Tensor:
        """Same as ``dequantize_weight``, one group at a time (readable, slow)."""
        codes = self.codes()
        w = torch.empty(self.out_features, self.in_features, device=codes.device)
        for row in range(self.out_features):
            for g in range(self.in_features // self.group_size):
                cols = slice(g * self.group_size, (g + 1) * self.group_size)
                if self.symmetric:
                    offset = 8 if self.bits == 4 else 0
                else:
                    offset = int(self.zero[row, g])
                w[row, cols] = (codes[row, cols] - offset).float() * float(self.scale[row, g])
        return w

    # "auto": the fastest CPU kernel (PyTorch's, llmnotes.qkernels, or llmnotes' own,
    # llmnotes.native) where this format has one and it measures faster than the readable path
    # for this shape; "fast": the fastest kernel whenever one exists; "native": llmnotes' own
    # kernel wherever it applies (one-row float32 inputs), else as "fast"; "reference": always
    # the readable path. Set per layer, or with set_kernel(model, ...).
    kernel: str = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = self._fast_path(x)
        if fast is not None:
            return fast(x)
        return self.forward_readable(x)

    def forward_readable(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass without a special kernel: dequantize (in effect), then matmul."""
        if self.group_size == self.in_features and self.symmetric:
            # One scale per output row factors out of the dot product: y = (x · q) * s.
            y = F.linear(x, self.codes().to(x.dtype) - self._offset()) * self.scale.to(x.dtype).T
            return y if self.bias is None else y + self.bias.to(x.dtype)
        return self.forward_reference(x)

    def kernel_name(self) -> str | None:
        """``"int8"`` or ``"int4"`` if this layer's format has a CPU kernel in this PyTorch
        build (see :mod:`llmnotes.qkernels`), else ``None``."""
        from llmnotes import qkernels

        if self.bits == 8 and self.symmetric and self.group_size == self.in_features and qkernels.int8_available():
            return "int8"
        if self.bits == 4 and self.group_size in qkernels.INT4_GROUP_SIZES and qkernels.int4_available():
            return "int4"
        return None

    def kernel_names(self, dtype: torch.dtype = torch.float32) -> list[str]:
        """Every CPU kernel that can run this layer here for ``dtype`` inputs: PyTorch's
        (:meth:`kernel_name`) and llmnotes' own ``"int8-native"`` / ``"int4-native"``
        (:mod:`llmnotes.native`: float32 one-row inputs, built on first use)."""
        names = [name for name in (self.kernel_name(),) if name]
        native_name = self._native_format() if dtype == torch.float32 else None
        if native_name is not None:
            from llmnotes import native

            if native.kernels() is not None:
                names.append(native_name)
        return names

    def _native_format(self) -> str | None:
        if self.bits == 8 and self.symmetric and self.group_size == self.in_features:
            # its sign trick negates weight bytes: -128 has no int8 negation
            return "int8-native" if int(self.qweight.min()) >= -127 else None
        if self.bits == 4 and self.symmetric and self.group_size % 32 == 0 and self.in_features % 64 == 0:
            return "int4-native"
        return None

    def _fast_path(self, x: torch.Tensor):
        """The packed kernel to run ``x`` through, or None for the readable path.

        The choice is remembered per layer, input dtype and thread count, and made again only
        if the layer's tensors change: decoding calls every layer once per token, and the
        checks cost more than a small layer's whole product.
        """
        if self.kernel == "reference" or x.device.type != "cpu" or torch.compiler.is_compiling():
            return None
        tensors = self._tensors()
        bias = tensors[-1]
        if torch.is_grad_enabled() and (x.requires_grad or bias is not None and bias.requires_grad):
            return None  # the kernels have no backward; QLoRA-style training takes the readable path
        key = self._memo_key(x.dtype, tensors)
        memo = _FAST.get(self)
        if memo is None or memo[0] != key:
            memo = _FAST[self] = (key, self._choose_fast_path(x.dtype))
        return memo[1]

    def _memo_key(self, dtype: torch.dtype, tensors: tuple | None = None) -> tuple:
        return (self.kernel, dtype, torch.get_num_threads(), self._stamp(tensors))

    def choose_decode_kernel(self, from_memory: bool) -> str:
        """Choose this layer's kernel for float32 decoding now, measuring the candidates on
        weights read from memory (``from_memory``, for a model larger than the CPU's cache) or
        from cache; return the chosen name (``"readable"`` for none).
        :func:`llmnotes.fast_linear.prepare_for_decode` calls it with the model's answer."""
        if self.kernel == "reference" or self.qweight.device.type != "cpu":
            return "readable"
        fast = self._choose_fast_path(torch.float32, from_memory)
        _FAST[self] = (self._memo_key(torch.float32), fast)
        return getattr(fast, "kernel", "readable")

    def _tensors(self) -> tuple:
        """(qweight, scale, zero, bias), read from the module's dicts directly: ``self.qweight``
        goes through ``nn.Module.__getattr__``, which costs more than the lookup itself."""
        buffers, params = self._buffers, self._parameters
        bias = params["bias"] if "bias" in params else buffers.get("bias", self.__dict__.get("bias"))
        return buffers["qweight"], buffers["scale"], buffers.get("zero"), bias

    def _stamp(self, tensors: tuple | None = None) -> tuple:
        """Where the layer's tensors live and how often they were written in place."""
        return tensor_stamp(tensors or self._tensors())

    def _choose_fast_path(self, dtype: torch.dtype, from_memory: bool = False):
        """The fastest kernel for this shape if it beats the readable path on this CPU (with
        ``kernel="fast"``, the fastest kernel; with ``"native"``, llmnotes' own where it
        applies), else None. Measured once per shape: on this layer, or with ``from_memory`` on
        enough copies of it to overflow the cache."""
        names = self.kernel_names(dtype) if self.qweight.device.type == "cpu" else []
        if not names:
            return None
        if self.kernel == "native" and names[-1].endswith("-native"):
            return self._packed(names[-1])
        from llmnotes.fast_linear import copies_to_read_from_memory, pick_fastest

        layer_bytes = sum(t.numel() * t.element_size() for t in self._tensors() if t is not None)
        copies = copies_to_read_from_memory(layer_bytes, from_memory)
        layers = [self] + [copy.deepcopy(self) for _ in range(copies - 1)]
        x1 = torch.randn(1, self.in_features, dtype=dtype)
        candidates = {} if self.kernel != "auto" else {"readable": lambda: [q.forward_readable(x1) for q in layers]}
        for name in names:
            candidates[name] = lambda name=name: [q._packed(name)(x1) for q in layers]
        key = self._choice_key(dtype, from_memory, names)
        with torch.no_grad():
            chosen, _ = pick_fastest(key, candidates, baseline=next(iter(candidates)), per_call=len(layers))
        return None if chosen == "readable" else self._packed(chosen)

    def _choice_key(self, dtype: torch.dtype, from_memory: bool, names: list[str] | None = None) -> tuple:
        names = self.kernel_names(dtype) if names is None else names
        return ("qlinear", self.out_features, self.in_features, self.bits, self.group_size, dtype, from_memory,
                self.kernel != "auto", tuple(names))

    def decode_choice(self, from_memory: bool) -> tuple[str, dict[str, float]] | None:
        """``(chosen kernel, median ms per candidate)`` as :meth:`choose_decode_kernel` measured
        this layer's shape at the current thread count, or None if it has not."""
        from llmnotes.fast_linear import cached_choice

        return cached_choice(self._choice_key(torch.float32, from_memory))

    def _packed(self, name: str):
        """A callable running the ``name`` kernel on this layer's weight (its ``kernel``
        attribute says which), packed once and repacked if the codes, scales or bias change
        (e.g. after ``load_state_dict``). llmnotes' own kernels also carry ``operands``,
        ``(kind, weight, scale, bias, group)`` as ``llmnotes.fused`` passes them to C++."""
        from llmnotes import native, qkernels

        stamp = self._stamp()
        cached = _PACKED.setdefault(self, {})
        if name in cached and cached[name][0] == stamp:
            return cached[name][1]
        bias = None if self.bias is None else self.bias.detach().float().contiguous()
        if name == "int8":
            fn = qkernels.int8_linear_fn(qkernels.int8_pack(self.qweight, self.scale.float(), self.bias))
        elif name == "int4":
            zero = self.zero if self.zero is not None else torch.full_like(self.scale, 8, dtype=torch.uint8)
            packed = qkernels.int4_pack(self.codes(), self.scale.float(), zero, self.group_size)
            fn = lambda x: qkernels.int4_linear(x, packed, self.group_size, self.bias)  # noqa: E731
        elif name in ("int8-native", "int4-native"):
            kernels, other = native.kernels(), self.kernel_name()
            # prompts and batches (more than one row) take PyTorch's kernel, or the readable path
            otherwise = self._packed(other) if other else self.forward_readable
            if name == "int8-native":
                qweight, scale = self.qweight.contiguous(), self.scale.float().flatten().contiguous()
                operands = ("q8", qweight, scale, bias, 0)
                run = lambda v: kernels.gemv_q8(v, qweight, scale, bias)  # noqa: E731
            else:
                packed = kernels.pack_q4(self.codes().to(torch.uint8).contiguous())
                scale = self.scale.float().contiguous()
                operands = ("q4", packed, scale, bias, self.group_size)
                run = lambda v: kernels.gemv_q4(v, packed, scale, self.group_size, bias)  # noqa: E731
            fn = native.one_row(run, self.in_features, self.out_features, otherwise)
            fn.operands = operands  # what llmnotes.fused's DecodePlan reads for this layer
        else:
            raise ValueError(f"unknown kernel {name!r}; this layer has {self.kernel_names()}")
        fn.kernel = name
        cached[name] = (stamp, fn)
        return fn


class NF4Linear(QuantizedLinearBase):
    """4-bit NormalFloat weights (QLoRA): blocks of ``quant_block`` = 64 values share one absmax.

    The blocks run over the flattened weight, as in bitsandbytes (whose ``blocksize`` this is), so
    ``quant_block`` need not divide ``in_features``; it must be even (two codes per byte).

    With ``double_quant`` the fp32 absmax constants are themselves quantized: their mean is
    subtracted and the rest stored as int8 with one fp32 scale per ``dq_block`` = 256 constants
    (QLoRA uses an 8-bit float code for this step; a linear int8 code is used here, which costs
    the same bits). That cuts the constants from 32/64 = 0.5 to 8/64 + 32/(64·256) ≈ 0.127 bits
    per weight.
    """

    def __init__(self, in_features: int, out_features: int, quant_block: int = 64,
                 double_quant: bool = False, dq_block: int = 256, bias: bool = True) -> None:
        for name, value in (("quant_block", quant_block), ("dq_block", dq_block)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if quant_block % 2:
            raise ValueError(f"quant_block must be even (two 4-bit codes per byte), got {quant_block}")
        super().__init__(in_features, out_features, bits=4, bias=bias)
        self.quant_block, self.double_quant, self.dq_block = quant_block, double_quant, dq_block
        n = in_features * out_features
        n_blocks = math.ceil(n / quant_block)
        self.register_buffer("qweight", torch.zeros(n_blocks * quant_block // 2, dtype=torch.uint8))
        if double_quant:
            n_dq = math.ceil(n_blocks / dq_block)
            self.register_buffer("absmax_q", torch.zeros(n_blocks, dtype=torch.int8))
            self.register_buffer("absmax_scale", torch.ones(n_dq, dtype=torch.float32))
            self.register_buffer("absmax_mean", torch.zeros((), dtype=torch.float32))
        else:
            self.register_buffer("absmax", torch.ones(n_blocks, dtype=torch.float32))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nf4, "
                f"quant_block={self.quant_block}, double_quant={self.double_quant}")

    def init_args(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "quant_block": self.quant_block,
                "double_quant": self.double_quant, "dq_block": self.dq_block, "bias": self.bias is not None}

    @classmethod
    def from_linear(cls, linear: nn.Linear, quant_block: int = 64, double_quant: bool = False,
                    dq_block: int = 256) -> "NF4Linear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, quant_block, double_quant, dq_block,
                    bias=linear.bias is not None).to(linear.weight.device)
        idx, absmax = nf4_quantize(linear.weight, quant_block)
        layer.qweight.copy_(pack_int4(idx.flatten()))
        if double_quant:
            mean = absmax.mean()
            centred = F.pad(absmax - mean, (0, (-absmax.numel()) % dq_block))
            q, s = absmax_quantize(centred, bits=8, group_size=dq_block)
            layer.absmax_q.copy_(q[: absmax.numel()])
            layer.absmax_scale.copy_(s)
            layer.absmax_mean.copy_(mean)
        else:
            layer.absmax.copy_(absmax)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach().float())
        return layer

    def block_absmax(self) -> torch.Tensor:
        """The per-block absmax constants (n_blocks,), undoing the double quantization."""
        if not self.double_quant:
            return self.absmax
        n = self.absmax_q.numel()
        q = F.pad(self.absmax_q, (0, (-n) % self.dq_block))
        return dequantize(q, self.absmax_scale, group_size=self.dq_block)[:n] + self.absmax_mean

    def dequantize_weight(self) -> torch.Tensor:
        idx = unpack_int4(self.qweight).long().view(-1, self.quant_block)  # (n_blocks, block)
        w = NF4_CODE.to(idx.device)[idx] * self.block_absmax()[:, None]
        return w.flatten()[: self.in_features * self.out_features].view(self.out_features, self.in_features)

    def dequantize_weight_reference(self) -> torch.Tensor:
        idx = unpack_int4(self.qweight).tolist()
        absmax = self.block_absmax().tolist()
        n = self.in_features * self.out_features
        values = [NF4_CODE[idx[i]].item() * absmax[i // self.quant_block] for i in range(n)]
        return torch.tensor(values).view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_reference(x)


class LLMInt8Linear(QuantizedLinearBase):
    """LLM.int8(): int8 matmul for ordinary features, 16-bit matmul for outlier features.

    A handful of hidden dimensions carry activations far larger than the rest (|x| > 6 is the
    paper's threshold); quantizing them with the others would blow up every row's scale.
    The outlier *input columns* are found once, from calibration activations (bitsandbytes
    instead looks at every batch at run time); their weight columns are kept in fp16 and
    multiplied in 16-bit. The rest use vector-wise int8: one absmax scale per row of X (per
    token) and per row of W (per output), an int32-accumulated integer matmul, and the outer
    product of the two scales to bring the result back to float. So ``forward`` differs from
    ``forward_reference`` (float activations) by the rounding of the activations to int8.
    """

    def __init__(self, in_features: int, out_features: int, n_outliers: int = 0, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bits=8, bias=bias)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features, 1, dtype=torch.float32))
        self.register_buffer("outlier_idx", torch.zeros(n_outliers, dtype=torch.int32))
        self.register_buffer("outlier_weight", torch.zeros(out_features, n_outliers, dtype=torch.float16))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"outlier_columns={self.outlier_idx.numel()}")

    def init_args(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "n_outliers": self.outlier_idx.numel(), "bias": self.bias is not None}

    @classmethod
    def from_linear(cls, linear: nn.Linear, outlier_columns: Iterable[int] = ()) -> "LLMInt8Linear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        cols = sorted({int(c) for c in outlier_columns})
        if cols and not (0 <= cols[0] and cols[-1] < linear.in_features):
            raise ValueError(f"outlier_columns must be in [0, {linear.in_features}), got {cols}")
        w = linear.weight.detach().float()
        layer = cls(linear.in_features, linear.out_features, len(cols), bias=linear.bias is not None).to(w.device)
        idx = torch.tensor(cols, dtype=torch.long, device=w.device)
        regular = w.clone()
        regular[:, idx] = 0.0  # these columns live in fp16 instead
        q, s = absmax_quantize(regular, bits=8, dim=1)
        layer.qweight.copy_(q)
        layer.scale.copy_(s)
        layer.outlier_idx.copy_(idx.to(torch.int32))
        layer.outlier_weight.copy_(w[:, idx].half())
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach().float())
        return layer

    def dequantize_weight(self) -> torch.Tensor:
        w = self.qweight.float() * self.scale
        w[:, self.outlier_idx.long()] = self.outlier_weight.float()
        return w

    dequantize_weight_reference = dequantize_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()  # (N, in)
        idx = self.outlier_idx.long()
        # 16-bit part: outlier features times their fp16 weight columns (fp16 values, computed in
        # fp32 here because CPUs lack fast fp16 matmuls; on a GPU this is an fp16 GEMM).
        y = x2[:, idx].half().float() @ self.outlier_weight.float().T  # (N, out)
        # int8 part: vector-wise absmax of X's rows, int8 codes, integer matmul.
        xr = x2.clone()
        xr[:, idx] = 0.0
        xq, sx = absmax_quantize(xr, bits=8, dim=1)  # (N, in) int8, (N, 1)
        # float64 holds every int32 partial sum exactly (|sum| < 127² · in ≪ 2**53), and is
        # fast on CPUs, unlike integer matmuls; on a GPU this is an int8 GEMM (torch._int_mm).
        acc = xq.double() @ self.qweight.double().T  # (N, out) exact integer sums
        y = y + (acc * (sx.double() * self.scale.double().T)).float()
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).view(*shape[:-1], self.out_features)


class QuantizedEmbedding(QuantizedLayer):
    """An embedding table stored as int8 rows with one fp16 absmax scale per row.

    A lookup dequantizes only the rows it reads. ``weight`` is an empty float placeholder so that
    code asking a model for its parameters' device and dtype keeps working; the table itself is
    ``qweight`` (num_embeddings, dim) int8 and ``scale`` (num_embeddings, 1). The layout is the
    same as a per-channel int8 ``QuantizedLinear`` of shape (out=num_embeddings, in=dim), so a
    tied output layer can share these very tensors (see ``tied_head``).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__(bits=8)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("qweight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(num_embeddings, 1, dtype=torch.float16))
        self.weight = nn.Parameter(torch.empty(0), requires_grad=False)  # device/dtype placeholder

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 rows"

    def init_args(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> "QuantizedEmbedding":
        if not isinstance(emb, nn.Embedding):
            raise TypeError(f"emb must be an nn.Embedding, got {type(emb).__name__}")
        w = emb.weight.detach()
        layer = cls(emb.num_embeddings, emb.embedding_dim).to(w.device)
        _, s = absmax_quantize(w, bits=8, dim=1)
        s = fp16_scale(s)
        layer.qweight.copy_(torch.round(w.float() / s).clamp(-127, 127).to(torch.int8))
        layer.scale.copy_(s.half())
        layer.weight.data = layer.weight.data.to(device=w.device, dtype=w.dtype)
        return layer

    def tied_head(self) -> QuantizedLinear:
        """An output layer (dim → num_embeddings) that shares this table's codes and scales."""
        head = QuantizedLinear(self.embedding_dim, self.num_embeddings, bits=8, bias=False)
        head.qweight, head.scale = self.qweight, self.scale  # the same tensors: stored once
        return head

    def dequantize_weight(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.float()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        rows = self.qweight[idx].to(self.weight.dtype)  # (..., dim)
        return rows * self.scale[idx].to(self.weight.dtype)
