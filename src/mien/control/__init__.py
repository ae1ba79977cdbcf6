"""Reading and editing latent spaces: interpolation, traversals, directions, inversion."""
