"""ADVENT: entropy-based domain adaptation for semantic segmentation."""
