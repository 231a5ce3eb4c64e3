"""Generation: from next-token logits to text.

* :mod:`~llmnotes.sampling.processors` -- the logits rules (temperature, top-k/top-p/min-p/typical
  filters, repetition and frequency penalties, ...) as pure functions and as Hugging Face-style
  processor objects;
* :mod:`~llmnotes.sampling.config` -- :class:`GenerationConfig`, every sampling setting in one
  validated dataclass;
* :mod:`~llmnotes.sampling.decode` -- the decode loop with the KV cache: :func:`stream` yields
  tokens as they are made, :func:`generate` collects them;
* :mod:`~llmnotes.sampling.text` -- :func:`complete`: text in, text out;
* :mod:`~llmnotes.sampling.beam` -- beam search;
* :mod:`~llmnotes.sampling.speculative` -- speculative decoding with a draft model.

Every public name of these modules is importable from here (``from llmnotes.sampling import generate``).
"""

from llmnotes.sampling.beam import beam_search
from llmnotes.sampling.config import GenerationConfig
from llmnotes.sampling.decode import (CACHE_BUCKET, COMPILE_MODES, DecodeStep, StopStrings, build_processors,
                                      check_prompt, generate, generate_reference, sample_next, stream,
                                      truncate_at_stop)
from llmnotes.sampling.processors import (BadWordsProcessor, ForcedBOSProcessor, ForcedEOSProcessor,
                                          FrequencyPresencePenaltyProcessor, LogitBiasProcessor, LogitsProcessor,
                                          LogitsProcessorList, MinLengthProcessor, MinPWarper,
                                          NoRepeatNGramProcessor, RepetitionPenaltyProcessor, TemperatureWarper,
                                          TopKWarper, TopPWarper, TypicalWarper, banned_ngram_tokens, entropy,
                                          frequency_presence_penalty, kept_count, min_p_filter, repetition_penalty,
                                          temperature_scale, token_counts, top_k_filter, top_p_filter,
                                          typical_filter)
from llmnotes.sampling.speculative import SpeculativeStats, early_exit_draft, speculative_generate, verify
from llmnotes.sampling.text import complete, encode_prompts, pad_left

__all__ = [
    # the decode loop
    "GenerationConfig", "generate", "stream", "complete", "encode_prompts", "pad_left", "generate_reference", "build_processors", "sample_next", "check_prompt",
    "StopStrings", "truncate_at_stop", "DecodeStep", "CACHE_BUCKET", "COMPILE_MODES",
    # other decoders
    "beam_search", "speculative_generate", "early_exit_draft", "verify", "SpeculativeStats",
    # logits rules: functions
    "temperature_scale", "top_k_filter", "top_p_filter", "min_p_filter", "typical_filter",
    "repetition_penalty", "frequency_presence_penalty", "token_counts", "banned_ngram_tokens",
    "entropy", "kept_count",
    # logits rules: processors
    "LogitsProcessor", "LogitsProcessorList", "TemperatureWarper", "TopKWarper", "TopPWarper",
    "MinPWarper", "TypicalWarper", "RepetitionPenaltyProcessor", "FrequencyPresencePenaltyProcessor",
    "NoRepeatNGramProcessor", "LogitBiasProcessor", "BadWordsProcessor", "MinLengthProcessor",
    "ForcedBOSProcessor", "ForcedEOSProcessor",
]
