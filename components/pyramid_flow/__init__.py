"""Pyramid Flow: Pyramidal Flow Matching for efficient video generation (arXiv 2410.05954)."""
