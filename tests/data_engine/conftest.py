"""TEMPORARY until showo/tokenizer/__init__.py lands: expose load_image_tokenizer at the package level."""

import showo.tokenizer
import showo.tokenizer.model

if not hasattr(showo.tokenizer, "load_image_tokenizer"):
    showo.tokenizer.load_image_tokenizer = showo.tokenizer.model.load_image_tokenizer
