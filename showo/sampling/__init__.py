"""Inference: MaskGIT text-to-image (with inpainting and extrapolation), understanding decode,
autoregressive images and mixed-modality generation, all with key/value caches.

Public entry points (image ids are unified ids, `vocab.image_offset + code`; codes are raw 0..K-1):
- `maskgit.generate(model, prompter, prompts, steps, guidance, schedule, temperature_schedule, generator,
  image_ids=None, temperature=1.0, use_cache=True, progress=False, draw="inverse_cdf") -> codes [B,N]`
  (`draw="multinomial"`: the official code draw, docs/official-differences.md#sampling)
- `canvas.inpaint(model, prompter, prompts, codes, token_mask, **generate_kwargs) -> codes [B,N]`;
  `canvas.extrapolate(model, prompter, prompts, canvas [B,h,w], direction, offset=0, **generate_kwargs)
  -> canvas`; `canvas.token_mask_from_image(mask_picture, image_size, resolution, grid) -> bool [h*w]`
- `understand.decode(model, prompter, image_ids, questions, max_new_tokens, temperature=0, top_k, top_p,
  generator, use_cache=True) -> list[str]` (`decode_ids` -> token ids)
- `ar.generate(model, prompter, prompts, guidance, temperature, top_k, top_p, generator) -> codes [B,N]`
- `diffusion.generate(model, prompter, prompts, options, generator, use_cache=True) -> scaled latents
  [B,C,h,w]` (the diffusion objective: text prefix cached once, CFG, the objective's diffusers scheduler)
- `mixed.generate(model, prompter, captions, frames, steps, ...) -> list[MixedSample(captions, codes)]`
  (codes, or latents for a continuous objective: Transfusion's switch to diffusion at [soi], text after [eoi])
- `pipeline.load_pipeline(ckpt, image_tokenizer=None, device=None) -> Pipeline` (model, prompter,
  image tokenizer or, for a latent objective, its VAE as `latent_images.LatentImages`, objective): the one
  checkpoint loader; `Pipeline.decode_images / encode_images` whatever the objective;
  `images.decode_codes / encode_image / save_grid / load_image`.
Which image sampler serves a checkpoint is its objective's choice: `model.objective.generate(model, prompter,
prompts, options, generator)` (`showo.objectives`), never a caller's.
"""
