"""Quantization: store a model's weights in 8 or 4 bits instead of 32.

Smallest pieces first, one module each:

* :mod:`~llmnotes.quantize.primitives` -- quantize a tensor (absmax, zero-point, NF4) and pack
  4-bit codes;
* :mod:`~llmnotes.quantize.layers` -- the base ``QuantizedLayer`` (any quantized layer) and
  ``QuantizedLinearBase`` (any quantized linear layer); ``QuantizedLinear`` (integer codes),
  ``NF4Linear``, ``LLMInt8Linear`` and ``QuantizedEmbedding``;
* :mod:`~llmnotes.quantize.gptq` -- GPTQ (Frantar et al. 2022, arXiv:2210.17323);
* :mod:`~llmnotes.quantize.models` -- ``quantize_model`` for a whole model, ``model_bytes``,
  ``quality_table``;
* :mod:`~llmnotes.quantize.io` -- ``save_quantized`` / ``load_quantized``.

Every public name is importable from here. ``perplexity`` is :func:`llmnotes.evaluate.perplexity`
and ``export_gguf`` is :func:`llmnotes.convert.gguf.export_gguf` (GGUF for llama.cpp), re-exported where
the deployment pages use them.
"""

from llmnotes.evaluate import perplexity
from llmnotes.convert.gguf import export_gguf
from llmnotes.quantize.gptq import (dequantize_codes, gptq_quantize_model, gptq_quantize_weight, gptq_reference,
                                    output_error, rtn_quantize_weight)
from llmnotes.quantize.io import LAYER_CLASSES, load_quantized, save_quantized
from llmnotes.quantize.layers import (KERNELS, LLMInt8Linear, NF4Linear, QuantizedEmbedding, QuantizedLayer,
                                      QuantizedLinear, QuantizedLinearBase)
from llmnotes.quantize.models import (METHODS, TABLE_ROWS, activation_absmax, corpus_ids, format_table, linear_layers,
                                      model_bytes, quality_table, quantize_embeddings, quantize_model,
                                      run_calibration, set_kernel)
from llmnotes.quantize.primitives import (NF4_CODE, absmax_quantize, dequantize, fp16_scale, nf4_quantize,
                                          pack_int4, unpack_int4, zeropoint_quantize)

__all__ = [
    # a tensor
    "absmax_quantize", "zeropoint_quantize", "dequantize", "fp16_scale", "pack_int4", "unpack_int4",
    "NF4_CODE", "nf4_quantize",
    # layers
    "QuantizedLayer", "QuantizedLinearBase", "QuantizedLinear", "NF4Linear", "LLMInt8Linear",
    "QuantizedEmbedding", "KERNELS",
    # GPTQ
    "gptq_quantize_model", "gptq_quantize_weight", "gptq_reference", "rtn_quantize_weight",
    "dequantize_codes", "output_error",
    # whole models
    "METHODS", "quantize_model", "quantize_embeddings", "linear_layers", "run_calibration",
    "activation_absmax", "set_kernel", "model_bytes", "TABLE_ROWS", "quality_table", "format_table",
    "corpus_ids",
    "perplexity",
    # files
    "save_quantized", "load_quantized", "LAYER_CLASSES", "export_gguf",
]
