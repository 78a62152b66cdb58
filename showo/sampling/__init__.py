"""Inference: MaskGIT text-to-image (with inpainting and extrapolation), understanding decode,
autoregressive images and mixed-modality generation, all with key/value caches."""
