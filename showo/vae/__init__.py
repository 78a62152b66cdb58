"""The continuous image autoencoder (diffusers `AutoencoderKL`) of the diffusion objective."""

from showo.vae.model import Vae, build_tiny_vae, load_vae

__all__ = ["Vae", "build_tiny_vae", "load_vae"]
