"""Arrays from other libraries (torch tensors, anything with DLPack) as numpy views, without a copy.

A CPU tensor becomes a numpy array over the same memory through DLPack (:func:`numpy.from_dlpack`);
a tensor in GPU (or other device) memory is refused with a message saying how to move it,
because the scans read host memory. Objects without DLPack go through :func:`numpy.asarray`
(the array interface, also without a copy where the object allows it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_host_array"]

# DLPack's DLDeviceType codes (dlpack.h); 1 is plain CPU memory.
_DEVICES = {
    1: "CPU",
    2: "CUDA",
    3: "CUDA host (pinned)",
    4: "OpenCL",
    7: "Vulkan",
    8: "Metal",
    9: "VPI",
    10: "ROCm",
    11: "ROCm host",
    13: "CUDA managed",
    14: "oneAPI",
    15: "WebGPU",
    16: "Hexagon",
    17: "MAIA",
}


def as_host_array(obj: Any, name: str) -> Any:
    """``obj`` as a numpy array sharing its memory when it is a CPU DLPack tensor.

    Args:
        obj: A numpy array, a tensor with ``__dlpack__`` (torch, JAX, CuPy, ...), or anything
            :func:`numpy.asarray` takes.
        name: What it is (``"query"``, ``"corpus"``), for messages.

    Returns:
        A numpy array (the same object for a numpy array).

    Raises:
        TypeError: A tensor on a device other than the CPU, or one whose dtype numpy cannot
            view (bfloat16, say).
    """
    if isinstance(obj, np.ndarray):
        return obj
    device = getattr(obj, "__dlpack_device__", None)
    if device is None or not hasattr(obj, "__dlpack__"):
        return np.asarray(obj)
    kind = int(device()[0])
    if kind != 1:
        where = _DEVICES.get(kind, f"DLPack device type {kind}")
        raise TypeError(
            f"{name} is a tensor in {where} memory; matryo_fast searches in CPU memory: "
            f"move it once with {name}.cpu() (torch) or pass a numpy array"
        )
    if getattr(obj, "requires_grad", False):
        obj = obj.detach()  # a view of the same memory; DLPack refuses tensors that need grad
    try:
        return np.from_dlpack(obj)
    except (BufferError, TypeError, ValueError, RuntimeError) as exc:
        dtype = getattr(obj, "dtype", "its dtype")
        raise TypeError(
            f"{name} ({type(obj).__name__} of {dtype}) cannot be viewed as a numpy array: {exc}; "
            f"convert it to float32 first"
        ) from None
