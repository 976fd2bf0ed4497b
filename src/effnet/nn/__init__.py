"""torch modules built from an `effnet.arch` spec."""
