"""Operations of the layer program, one module each, and the bundle format they make up."""
