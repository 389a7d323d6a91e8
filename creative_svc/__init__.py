"""creative_svc: diffusion (and GAN) image generation; ideation -> visuals -> critique."""
