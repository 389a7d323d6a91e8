"""Serving backends for moe_svc's model: decode kernels, the shared-base expert layout, and
the module swaps that install them from outside the model (`install_backend`).

    kernel = load_kernel(torch.bfloat16)  # None: torch's ops (the reference backend)
    install_backend(model, kernel)
"""

from moe_svc.kernels.backend import InstalledBackend, install_backend
from moe_svc.kernels.skinny import MAX_ROWS, SkinnyKernel, load_kernel

__all__ = ["MAX_ROWS", "InstalledBackend", "SkinnyKernel", "install_backend", "load_kernel"]
