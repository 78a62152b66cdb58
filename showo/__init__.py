"""Show-o training system: tokenizer, model, prompting, sampling and Lightning training."""
