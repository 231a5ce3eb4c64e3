"""Converting a model for other runtimes: GGUF files for llama.cpp.

* :mod:`~llmnotes.convert.gguf` -- the GGUF v3 writer, Q8_0/Q4_0 blocks, ``export_gguf`` for
  GPT-2-style models;
* :mod:`~llmnotes.convert.gguf_llama` -- the Llama-family tensors and metadata (interleaved RoPE).

The Hugging Face directory format is the model's own (``GPT.from_pretrained`` /
``save_pretrained`` read and write it), so its mapping lives beside the model in the core
(``llmnotes/hf.py``, ``llmnotes/hf_llama.py``): a core module may not import this package.
"""

from llmnotes.convert.gguf import (GGML_TYPES, QTYPES, dequantize_q4_0, dequantize_q8_0, export_gguf, gguf_tensor_name,
                                   quantize_q4_0, quantize_q8_0, tensor_type, tokenizer_metadata, write_gguf)
from llmnotes.convert.gguf_llama import from_interleaved_rope, to_interleaved_rope

__all__ = ["export_gguf", "write_gguf", "QTYPES", "GGML_TYPES", "quantize_q8_0", "dequantize_q8_0", "quantize_q4_0",
           "dequantize_q4_0", "gguf_tensor_name", "tensor_type", "tokenizer_metadata", "to_interleaved_rope",
           "from_interleaved_rope"]
