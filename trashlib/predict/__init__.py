"""Prediction: per-image class probabilities with test-time augmentation, the probability store that keeps them, and
batching for inference."""
