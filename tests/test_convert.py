"""erasekit.convert: the API's arrays to model tensors and back."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skimage import data

from erasekit.convert import image_to_tensor, mask_to_tensor, tensor_to_image, tensor_to_mask


def test_round_trips_are_exact_on_a_real_photo():
    image = data.astronaut()[:64, :80]
    np.testing.assert_array_equal(tensor_to_image(image_to_tensor(image))[0], image)
    mask = (data.camera()[:64, :80] > 128).astype(np.float32)
    np.testing.assert_array_equal(tensor_to_mask(mask_to_tensor(mask))[0], mask)


def test_read_only_inputs_are_copied_not_shared_and_do_not_warn():
    """Cached and memory-mapped inputs are read-only: torch cannot share their memory (it warns and leaves a
    tensor whose writes are undefined), so they are copied; writable float32 masks are still shared."""
    image = data.astronaut()[:32, :32].copy()
    mask = np.zeros((32, 32), np.float32)
    mask[8:16, 8:16] = 1
    image.flags.writeable = False
    mask.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t_image, t_mask = image_to_tensor(image), mask_to_tensor(mask)
    t_mask.mul_(0)  # writable, and the input is untouched
    assert mask.sum() == 64 and torch.equal(t_image, image_to_tensor(image.copy()))
    shared = np.ones((4, 4), np.float32)
    mask_to_tensor(shared).mul_(2)
    assert (shared == 2).all()
