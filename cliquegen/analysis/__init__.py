"""Looks inside trained models (weight strengths, feature maps) and timing of generated models."""
