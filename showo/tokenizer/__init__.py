"""MAGVIT-v2 image tokenizer with lookup-free quantization: model, official-weight loading, transform.

Training lives in `showo.tokenizer.training` (imported on demand: it pulls in Lightning).
"""

from showo.tokenizer.config import TokenizerConfig, TokenizerRecipe
from showo.tokenizer.model import ImageTokenizer, load_image_tokenizer
from showo.tokenizer.transform import showo_transform

__all__ = ["ImageTokenizer", "TokenizerConfig", "TokenizerRecipe", "load_image_tokenizer", "showo_transform"]
