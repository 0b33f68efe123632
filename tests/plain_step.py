"""The plain training step the speed benchmark compares against.

fp32, contiguous memory, and everything written the straightforward way: each image
augmented on its own (as a per-sample data-loader transform would), soft quantization
book by book from explicit differences, and the loss from a (2N, 2N, D) broadcast of
cosine similarities with positives and negatives picked out by masks. Same method,
same numbers; tests check it against the fast step of spq.method.step.
"""
import torch
import torch.nn.functional as F


def plain_views(augment, images):
    """Two views, one image at a time: uint8 (B, 3, H, W) -> two float (B, 3, S, S)."""
    x = images.float() / 255
    return tuple(torch.stack([augment(img.unsqueeze(0))[0] for img in x]) for _ in range(2))


def plain_soft_quantize(x, codebooks, tau_q):
    parts = []
    length = codebooks.shape[2]
    for m in range(codebooks.shape[0]):
        sub = x[:, m * length:(m + 1) * length]                           # (B, L)
        d2 = ((sub.unsqueeze(1) - codebooks[m].unsqueeze(0)) ** 2).sum(-1)  # (B, K)
        parts.append(torch.softmax(-tau_q * d2, dim=1) @ codebooks[m])    # (B, L)
    return torch.cat(parts, dim=1)


def _plain_nt_xent(u, v, temperature):
    n = u.shape[0]
    r = torch.cat([u, v])                                                 # (2N, D)
    sim = F.cosine_similarity(r.unsqueeze(1), r.unsqueeze(0), dim=-1)     # (2N, 2N) via (2N, 2N, D)
    pos = torch.cat([torch.diag(sim, n), torch.diag(sim, -n)]).unsqueeze(1)
    keep = ~torch.eye(2 * n, dtype=torch.bool, device=r.device)
    keep &= ~torch.eye(2 * n, dtype=torch.bool, device=r.device).roll(n, dims=1)
    neg = sim[keep].view(2 * n, -1)                                       # (2N, 2N-2)
    logits = torch.cat([pos, neg], dim=1) / temperature
    target = torch.zeros(2 * n, dtype=torch.long, device=r.device)
    return F.cross_entropy(logits, target, reduction="sum")


def plain_loss_on_views(model, view_a, view_b, temperature):
    xa, xb = model(view_a), model(view_b)
    za = plain_soft_quantize(xa, model.codebooks, model.tau_q)
    zb = plain_soft_quantize(xb, model.codebooks, model.tau_q)
    return (_plain_nt_xent(xa, zb, temperature) + _plain_nt_xent(xb, za, temperature)) / (2 * xa.shape[0])


def plain_training_step(model, augment, images, optimizer, temperature):
    loss = plain_loss_on_views(model, *plain_views(augment, images), temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()
