"""samat.theory: the papers' Gaussian robust/non-robust model, its exact optima, and checks of Theorems 1-5.

This package never imports torch.
"""
