"""Interpretable face recognition (Yin et al., ICCV 2019): losses, synthetic occlusion, peak locations."""
