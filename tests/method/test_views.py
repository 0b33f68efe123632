"""The two-view augmentation: the authors' kornia 0.5.10 pipeline against plain references
written here from its formulas, its parameter distributions, and the SimCLR alternative."""
import colorsys
import math
import random

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F

from spq.method.views import FixedAnisotropicBlur, StrictResizedCrop, blur_kernel_size, gaussian_1d, make_augmentation


@pytest.mark.parametrize("size,kernel", [(32, 3), (64, 7), (224, 23), (16, 3), (50, 5)])
def test_blur_kernel(size, kernel):
    assert blur_kernel_size(size) == kernel


@pytest.mark.parametrize("kind", ["authors", "simclr"])
def test_views_shape_range_and_independence(kind):
    torch.manual_seed(0)
    aug = make_augmentation(32, kind)
    x = torch.rand(16, 3, 32, 32)
    a, b = aug(x), aug(x)
    assert a.shape == b.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, b)   # each call draws new parameters


@pytest.mark.parametrize("kind", ["authors", "simclr"])
def test_resize_to_input_size(kind):
    torch.manual_seed(0)
    assert make_augmentation(24, kind)(torch.rand(4, 3, 32, 32)).shape == (4, 3, 24, 24)


def test_an_unknown_pipeline_is_refused():
    with pytest.raises(ValueError, match="authors, simclr"):
        make_augmentation(32, "byol")


# --- colour jitter: kornia 0.5.10's ColorJitter, a plain per-pixel reference -------------

def plain_jitter(x, params):
    """0.5.10's formulas, pixel by pixel with colorsys: brightness adds f - 1, contrast
    multiplies by f (both clamped to [0, 1]), saturation multiplies HSV S (clamped), hue
    adds f turns; in the batch's one order; only on the images of batch_prob."""
    out = x.clone()
    names = ["brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"]
    order = params["order"].tolist()
    for i in range(x.shape[0]):
        if not params["batch_prob"][i]:
            continue
        f = [float(params[n][i]) for n in names]
        for y in range(x.shape[2]):
            for xx in range(x.shape[3]):
                rgb = [float(c) for c in x[i, :, y, xx]]
                for step in order:
                    if step == 0:
                        rgb = [min(max(c + f[0] - 1, 0.0), 1.0) for c in rgb]
                    elif step == 1:
                        rgb = [min(max(c * f[1], 0.0), 1.0) for c in rgb]
                    else:
                        h, s, v = colorsys.rgb_to_hsv(*rgb)
                        if step == 2:
                            s = min(max(s * f[2], 0.0), 1.0)
                        else:
                            h = (h + f[3]) % 1.0
                        rgb = list(colorsys.hsv_to_rgb(h, s, v))
                out[i, :, y, xx] = torch.tensor(rgb)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jitter_matches_the_plain_formulas_with_the_sampled_parameters(seed):
    torch.manual_seed(seed)
    jitter = make_augmentation(32, "authors")[2]
    x = torch.rand(6, 3, 5, 7)
    y = jitter(x)
    params = jitter._params
    assert params["batch_prob"].any()
    torch.testing.assert_close(y, plain_jitter(x, params), atol=2e-5, rtol=0)


def test_jitter_is_not_torchvision_style():
    """The same factors through today's ColorJitter (multiplicative brightness, contrast
    blended with the mean) give another image: the plain reference tells them apart."""
    torch.manual_seed(3)
    x = torch.rand(4, 3, 5, 5)
    jiggle = K.ColorJiggle(0.4, 0.4, 0.4, 0.1, p=1.0)
    jiggle(x)
    params = jiggle._params
    modern = K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)(x, params=params)
    assert (modern - plain_jitter(x, params)).abs().max() > 0.05


def test_jitter_distributions():
    torch.manual_seed(4)
    n = 20000
    p = make_augmentation(32, "authors")[2].forward_parameters(torch.Size([n, 3, 32, 32]))
    for key, lo, hi in [("brightness_factor", 0.6, 1.4), ("contrast_factor", 0.6, 1.4),
                        ("saturation_factor", 0.6, 1.4), ("hue_factor", -0.1, 0.1)]:
        v = p[key]
        assert v.min() >= lo and v.max() <= hi, key
        assert abs(v.mean().item() - (lo + hi) / 2) < 0.01, key          # uniform: mean mid
        assert v.std().item() == pytest.approx((hi - lo) / math.sqrt(12), rel=0.03), key
    assert sorted(p["order"].tolist()) == [0, 1, 2, 3]                   # one order per call
    assert rate_ok(p["batch_prob"], 0.8, n)


# --- Gaussian blur: a fixed, horizontal-only kernel ----------------------------------------

def test_blur_kernel_is_the_fixed_anisotropic_one():
    blur = FixedAnisotropicBlur(3)
    k = blur.kernel[0]
    rows = [math.exp(-d * d / (2 * 0.1 ** 2)) for d in (-1, 0, 1)]
    cols = [math.exp(-d * d / (2 * 2.0 ** 2)) for d in (-1, 0, 1)]
    expected = torch.tensor([[r * c for c in cols] for r in rows]) / (sum(rows) * sum(cols))
    torch.testing.assert_close(k, expected, atol=1e-7, rtol=0)
    torch.testing.assert_close(k[1], torch.tensor([0.3192, 0.3617, 0.3192]), atol=1e-4, rtol=0)
    assert k[0].max() < 1e-20 and k[2].max() < 1e-20                    # no vertical blur
    torch.testing.assert_close(gaussian_1d(3, 2.0), k.sum(0), atol=1e-7, rtol=0)


def plain_blur(x, chosen):
    """Each chosen image's rows convolved with 0.5.10's sigma-2 weights, reflect border."""
    w = [math.exp(-d * d / 8) for d in (-1, 0, 1)]
    w = [v / sum(w) for v in w]
    out = x.clone()
    width = x.shape[3]
    for i in range(x.shape[0]):
        if not chosen[i]:
            continue
        for col in range(width):
            acc = 0
            for j, d in enumerate((-1, 0, 1)):
                c = col + d
                c = -c if c < 0 else (2 * (width - 1) - c if c >= width else c)
                acc = acc + w[j] * x[i, :, :, c]
            out[i, :, :, col] = acc
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_blur_matches_a_plain_horizontal_filter(seed):
    torch.manual_seed(seed)
    blur = FixedAnisotropicBlur(3)
    x = torch.rand(8, 3, 6, 9)
    y = blur(x)
    chosen = blur._params["batch_prob"]
    assert chosen.any() and not chosen.all()
    torch.testing.assert_close(y, plain_blur(x, chosen), atol=1e-6, rtol=0)


def test_blur_leaves_vertical_detail_and_smooths_horizontal_detail():
    blur = FixedAnisotropicBlur(3)
    stripes = torch.zeros(2, 3, 8, 8)
    stripes[:, :, ::2, :] = 1                             # horizontal stripes: rows alternate
    on = {"batch_prob": torch.tensor([True, True])}
    torch.testing.assert_close(blur.apply(stripes, on), stripes, atol=1e-6, rtol=0)
    columns = stripes.transpose(2, 3)                     # vertical stripes: columns alternate
    assert (blur.apply(columns, on) - columns).abs().max() > 0.3


def test_blur_rate():
    torch.manual_seed(5)
    n = 20000
    assert rate_ok(FixedAnisotropicBlur(3).forward_parameters(torch.Size([n, 3, 32, 32]))["batch_prob"], 0.5, n)


# --- resized crop: strictly smaller than the image, bilinear with aligned corners -----------

def plain_resize(crop, size):
    """Bilinear resize with aligned corners, one output pixel at a time."""
    c, h, w = crop.shape
    out = torch.empty(c, size, size)
    for oy in range(size):
        sy = oy * (h - 1) / (size - 1)
        y0 = int(math.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for ox in range(size):
            sx = ox * (w - 1) / (size - 1)
            x0 = int(math.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - x0
            out[:, oy, ox] = ((1 - fy) * ((1 - fx) * crop[:, y0, x0] + fx * crop[:, y0, x1])
                              + fy * ((1 - fx) * crop[:, y1, x0] + fx * crop[:, y1, x1]))
    return out


@pytest.mark.parametrize("seed,size", [(0, 32), (1, 24), (2, 40)])
def test_crop_matches_a_plain_crop_and_resize(seed, size):
    torch.manual_seed(seed)
    crop = StrictResizedCrop(size)
    x = torch.rand(6, 3, 32, 32)
    y = crop(x)
    p = crop._params
    for i in range(6):
        t, l, h, w = (int(p[k][i]) for k in ("top", "left", "height", "width"))
        piece = x[i, :, t:t + h, l:l + w]
        torch.testing.assert_close(y[i], plain_resize(piece, size), atol=1e-5, rtol=0)
        ref = F.interpolate(piece[None], size=(size, size), mode="bilinear", align_corners=True)[0]
        torch.testing.assert_close(y[i], ref, atol=1e-5, rtol=0)


def test_crop_of_one_pixel_and_of_the_whole_width():
    x = torch.rand(2, 3, 32, 32)
    p = {"top": torch.tensor([5, 0]), "left": torch.tensor([7, 0]),
         "height": torch.tensor([1, 24]), "width": torch.tensor([1, 32])}
    y = StrictResizedCrop(32).apply(x, p)
    torch.testing.assert_close(y[0], x[0, :, 5:6, 7:8].expand(3, 32, 32))
    torch.testing.assert_close(y[1], plain_resize(x[1, :, :24, :], 32), atol=2e-6, rtol=0)


def plain_crop_sizes(n, side=32, seed=0):
    """kornia 0.5.10's rule with Python's random module: up to 10 draws, the first with
    0 < height, width < side, else (round(side * 3/4), side)."""
    rng = random.Random(seed)
    sizes = []
    for _ in range(n):
        for _ in range(10):
            area = rng.uniform(0.08, 1.0) * side * side
            r = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            h, w = round(math.sqrt(area * r)), round(math.sqrt(area / r))
            if 0 < h < side and 0 < w < side:
                sizes.append((h, w))
                break
        else:
            sizes.append((round(side * 3 / 4), side))
    return sizes


def test_crop_sizes_are_strict_and_distributed_as_the_plain_rule():
    torch.manual_seed(6)
    n = 40000
    p = StrictResizedCrop(32).forward_parameters(torch.Size([n, 3, 32, 32]))
    h, w, top, left = p["height"], p["width"], p["top"], p["left"]
    assert h.min() >= 1 and w.min() >= 1 and h.max() <= 31 and w.max() <= 31
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    ref = torch.tensor(plain_crop_sizes(n))
    for ours, theirs in [(h, ref[:, 0]), (w, ref[:, 1])]:
        a = torch.bincount(ours, minlength=33).float() / n
        b = torch.bincount(theirs, minlength=33).float() / n
        assert (a - b).abs().sum() / 2 < 0.02                  # total variation distance
    area = (h * w).float() / 1024
    assert area.mean().item() == pytest.approx((ref[:, 0] * ref[:, 1]).float().mean().item() / 1024, abs=0.01)
    assert abs((h.float() / w.float()).log().mean().item()) < 0.01      # symmetric ratio
    room = 32 - h                                             # corners uniform over 0..room
    assert (top[room > 0].float() / room[room > 0]).mean().item() == pytest.approx(0.5, abs=0.01)


def test_crop_falls_back_when_no_draw_fits():
    torch.manual_seed(7)
    p = StrictResizedCrop(32, scale=(1.0, 1.0)).forward_parameters(torch.Size([100, 3, 32, 32]))
    assert (p["height"] == 24).all() and (p["width"] == 32).all() and (p["left"] == 0).all()
    assert p["top"].min() >= 0 and p["top"].max() <= 8 and p["top"].unique().numel() > 1


def test_modern_kornia_crops_may_span_a_side_ours_never():
    """The rule that differs by kornia version: ours is fixed whatever kornia is installed."""
    torch.manual_seed(8)
    p = StrictResizedCrop(32).forward_parameters(torch.Size([20000, 3, 32, 32]))
    assert not ((p["height"] == 32) | (p["width"] == 32)).any()


# --- SimCLR pipeline: kornia's own sampling -------------------------------------------------

def rate_ok(chosen, expected, n):
    rate = chosen.float().mean().item()
    return abs(rate - expected) < 5 * math.sqrt(expected * (1 - expected) / n)


def test_simclr_blur_draws_sigma_per_image():
    torch.manual_seed(9)
    n = 20000
    blur = make_augmentation(32, "simclr")[4]
    sigma = blur.forward_parameters(torch.Size([n, 3, 32, 32]))["sigma"]
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0 and abs(sigma.mean().item() - 1.05) < 0.03


# The simclr augmentation's distributions, from the parameters kornia samples for a large
# batch (the authors' pipeline's are above).
N = 20000


@pytest.fixture(scope="module")
def params():
    torch.manual_seed(4)
    shape = torch.Size([N, 3, 32, 32])
    return [m.forward_parameters(shape) for m in make_augmentation(32, "simclr")]


def plain_simclr_crop_sizes(n, side=32, seed=0):
    """kornia's RandomResizedCrop rule (>= 0.7) with Python's random module: up to 10
    draws of area (uniform over 0.08..1 of the image) and log ratio (uniform over
    log 3/4..log 4/3); width round(sqrt(area * ratio)), height round(sqrt(area / ratio));
    the first with 0 < width, height <= side, else the whole image. [(w, h)] * n."""
    rng = random.Random(seed)
    sizes = []
    for _ in range(n):
        for _ in range(10):
            area = rng.uniform(0.08, 1.0) * side * side
            r = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(area * r)), round(math.sqrt(area / r))
            if 0 < w <= side and 0 < h <= side:
                sizes.append((w, h))
                break
        else:
            sizes.append((side, side))
    return sizes


def test_crop_scale_and_ratio(params):
    src = params[0]["src"].float()                               # (N, 4, 2) corner points
    w = src[:, 1, 0] - src[:, 0, 0] + 1
    h = src[:, 2, 1] - src[:, 1, 1] + 1
    scale, ratio = w * h / (32 * 32), w / h
    assert scale.min() >= 0.05 and scale.max() <= 1.0           # 0.08..1, up to pixel rounding
    assert ratio.min() >= 0.6 and ratio.max() <= 1.5            # 3/4..4/3, up to pixel rounding
    ref = torch.tensor(plain_simclr_crop_sizes(N)).float()
    ref_scale, ref_ratio = ref[:, 0] * ref[:, 1] / (32 * 32), ref[:, 0] / ref[:, 1]
    # the means of two samples of N: 5 standard errors of their difference apart at most
    for ours, theirs in [(scale, ref_scale), (ratio.log(), ref_ratio.log())]:
        bound = 5 * math.sqrt((ours.var() + theirs.var()).item() / N)
        assert abs(ours.mean().item() - theirs.mean().item()) < bound
    for ours, theirs in [(w, ref[:, 0]), (h, ref[:, 1])]:      # each side's distribution
        a = torch.bincount(ours.long(), minlength=33).float() / N
        b = torch.bincount(theirs.long(), minlength=33).float() / N
        assert (a - b).abs().sum() / 2 < 0.03                   # total variation distance


def test_flip_jitter_grayscale_blur_rates(params):
    _, flip, jitter, gray, blur = params
    assert rate_ok(flip["batch_prob"], 0.5, N) and rate_ok(jitter["batch_prob"], 0.8, N) and rate_ok(gray["batch_prob"], 0.2, N) and rate_ok(blur["batch_prob"], 0.5, N)


def test_jitter_and_blur_ranges(params):
    jitter, blur = params[2], params[4]
    for key, lo, hi in [("brightness_factor", 0.6, 1.4), ("contrast_factor", 0.6, 1.4),
                        ("saturation_factor", 0.6, 1.4), ("hue_factor", -0.1, 0.1)]:
        v = jitter[key]
        assert v.min() >= lo and v.max() <= hi, key
        assert abs(v.mean().item() - (lo + hi) / 2) < 0.02, key  # uniform over the range
    sigma = blur["sigma"]
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0 and abs(sigma.mean().item() - 1.05) < 0.03
