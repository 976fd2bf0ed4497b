"""What users do with a model besides training it: count, profile, fuse for inference, export."""
