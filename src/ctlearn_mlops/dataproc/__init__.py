"""Data processing: simtel -> DL1 conversion, image-only extraction, merging."""
