"""Evaluation: judges for the embedded worlds (shapes detector, digits classifier) and pinned
benchmark sets (geneval-mini, pope-mini, caption-mini) that score a model's outputs without a model."""
