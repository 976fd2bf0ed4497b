"""Architectures as data (no torch): stage rows, rounding rules, compound scaling, the paper tables."""
