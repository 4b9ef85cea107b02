"""ConvTasNet, its stacked form, enhancement, and the fused GPU kernels."""
