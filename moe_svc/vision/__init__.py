"""The core model sees images: a vision encoder, a projector into the token embedding
space, and the prompt positions where the projected image tokens are spliced in."""
