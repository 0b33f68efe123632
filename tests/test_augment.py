"""The two-view augmentation."""
import kornia.augmentation as K
import pytest
import torch

from spq.augment import blur_kernel_size, make_augmentation


@pytest.mark.parametrize("size,kernel", [(32, 3), (64, 7), (224, 23), (16, 3), (50, 5)])
def test_blur_kernel(size, kernel):
    assert blur_kernel_size(size) == kernel


def test_views_shape_range_and_independence():
    torch.manual_seed(0)
    aug = make_augmentation(32)
    x = torch.rand(16, 3, 32, 32)
    a, b = aug(x), aug(x)
    assert a.shape == b.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, b)   # each call draws new parameters


def test_resize_to_input_size():
    torch.manual_seed(0)
    assert make_augmentation(24)(torch.rand(4, 3, 32, 32)).shape == (4, 3, 24, 24)


def test_pipeline_parameters():
    crop, flip, jitter, gray, blur = make_augmentation(32)
    assert isinstance(crop, K.RandomResizedCrop) and isinstance(flip, K.RandomHorizontalFlip)
    assert isinstance(jitter, K.ColorJitter) and isinstance(gray, K.RandomGrayscale)
    assert isinstance(blur, K.RandomGaussianBlur)
    assert (flip.p, jitter.p, gray.p, blur.p) == (0.5, 0.8, 0.2, 0.5)
