"""Answers of a local causal language model to text prompts, through the transformers library: greedy,
zero-shot, left-padded batches, the continuation only. Shared by the benchmark components that score pretrained
LMs (NUPA's LLM table; logic_consistency). The model folder holds a Hugging Face checkpoint (config, weights,
tokenizer); nothing is downloaded (local_files_only)."""

from __future__ import annotations

from pathlib import Path

import torch

from components.core.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CausalLMAnswerer:
    def __init__(self, model_dir: str | Path, *, device: str = "cpu", dtype: str = "auto"):
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ConfigError(
                "scoring a pretrained LM needs the transformers package: pip install transformers"
            ) from None
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ConfigError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = "auto" if dtype == "auto" else DTYPES[dtype]
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch_dtype)
        self.model.to(device).eval()
        self.device = device

    @torch.no_grad()
    def answer(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """The greedy continuation of every prompt (special tokens dropped)."""
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        generated = self.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = generated[:, batch["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def continuation_logprob(self, prompt: str, continuation: str) -> float:
        """log p(continuation | prompt) under the model (for multiple-choice scoring)."""
        ids = self.tokenizer(prompt + continuation, return_tensors="pt").input_ids.to(self.device)
        start = len(self.tokenizer(prompt).input_ids)
        logits = self.model(ids).logits[0, :-1].float().log_softmax(-1)
        targets = ids[0, 1:]
        return float(logits[start - 1 :].gather(1, targets[start - 1 :, None]).sum())
