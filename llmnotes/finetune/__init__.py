"""Finetuning a pretrained GPT: classification, instructions, preferences; full, LoRA or QLoRA.

* :mod:`~llmnotes.finetune.data` -- the shipped datasets and a strict JSON-lines reader;
* :mod:`~llmnotes.finetune.classify` -- ``GPTClassifier``, ``freeze``, accuracy;
* :mod:`~llmnotes.finetune.instruct` -- Alpaca and chat prompt formats, loss masking, evaluation;
* :mod:`~llmnotes.finetune.lora` -- ``LoRALinear``, ``apply_lora``, ``merge_lora``, PEFT adapters;
* :mod:`~llmnotes.finetune.dpo` -- ``dpo_loss``, ``sequence_logprob``, ``DPOLoss``;
* :mod:`~llmnotes.finetune.tasks` -- ``FinetuneTrainer`` and ``build_task``, which the
  ``llmnotes finetune`` command (``llmnotes/cli/finetune.py``) runs.

Every public name is importable from here.
"""

from llmnotes.finetune.data import (CLASSIFY_LABELS, FINETUNE_DIR, OPTIONAL, PairDataset, SCHEMAS,
                                    load_classification, load_instructions, load_preferences, read_jsonl)
from llmnotes.finetune.classify import (ClassificationDataset, GPTClassifier, accuracy, classification_loss,
                                        confusion_matrix, freeze, last_token_index, predict)
from llmnotes.finetune.instruct import (ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT, IGNORE_INDEX,
                                        InstructionDataset, STYLES, encode_example, evaluate_instructions,
                                        format_alpaca, format_chat, format_prompt, normalize, pad_right,
                                        respond, response_text, score_response, sft_loss,
                                        trim_padding)
from llmnotes.finetune.lora import (DEFAULT_TARGETS, LoRALinear, PEFT_PREFIX, apply_lora, base_weight,
                                    disable_lora, load_adapter, lora_layers, lora_state_dict,
                                    memory_breakdown, merge_lora, read_adapter_config, save_adapter,
                                    trainable_parameters, unmerge_lora)
from llmnotes.finetune.dpo import (DPOLoss, PreferenceDataset, dpo_loss, pair_logprobs, pair_margins,
                                   preference_accuracy, preference_margin, sequence_logprob, token_logprobs)
from llmnotes.finetune.tasks import (FinetuneTrainer, build_task)
from llmnotes.sampling import pad_left  # batched generation's padding, where finetuning used to keep it
from llmnotes.train import TrainConfig  # what FinetuneTrainer takes, where the pages import it

__all__ = [
    "FINETUNE_DIR", "CLASSIFY_LABELS", "SCHEMAS", "OPTIONAL", "read_jsonl", "load_classification",
    "load_instructions", "load_preferences", "PairDataset", "last_token_index", "GPTClassifier", "freeze",
    "ClassificationDataset", "classification_loss", "predict", "accuracy", "confusion_matrix",
    "IGNORE_INDEX", "ALPACA_PROMPT", "ALPACA_PROMPT_NO_INPUT", "STYLES", "format_alpaca", "format_chat",
    "format_prompt", "response_text", "encode_example", "pad_right", "pad_left", "InstructionDataset",
    "trim_padding", "sft_loss", "respond", "normalize", "score_response", "evaluate_instructions",
    "DEFAULT_TARGETS", "LoRALinear", "base_weight", "lora_layers", "apply_lora", "merge_lora",
    "unmerge_lora", "disable_lora", "lora_state_dict", "trainable_parameters", "memory_breakdown",
    "PEFT_PREFIX", "save_adapter", "read_adapter_config", "load_adapter", "dpo_loss", "token_logprobs",
    "sequence_logprob", "PreferenceDataset", "pair_logprobs", "DPOLoss", "pair_margins",
    "preference_margin", "preference_accuracy", "FinetuneTrainer", "build_task", "TrainConfig"
]
