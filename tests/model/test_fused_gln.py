"""workflow_scripts/model/fused_gln.py, fused_mask.py and fused_skip.py: the fused ops against the eager ones.

The Triton kernels run here on the CPU through Triton's interpreter
(TRITON_INTERPRET=1, read when the kernels are first used), in a subprocess
so that no other test sees the variable: `python tests/model/test_fused_gln.py
kernels|stacked` is that subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workflow_scripts.model import fused_skip, stacked
from workflow_scripts.model.convtasnet import ConvTasNet
from workflow_scripts.model.fused_gln import (
    GradLink,
    conv_prelu_gln,
    fused_available,
    gln,
    prelu_gln,
    prelu_gln_reference,
)
from workflow_scripts.model.fused_mask import mask_decode, sigmoid_mask, sigmoid_mask_reference
from workflow_scripts.model.fused_skip import concat_blocks

REPO = Path(__file__).resolve().parents[2]
TINY = {"N": 16, "L": 16, "B": 4, "H": 6, "Sc": 5, "P": 3, "X": 2, "R": 2, "causal": False}


def _inputs(batch, num_models, channels, frames, dtype, shift=0.0, seed=0, bias=True):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    h = rand(batch, num_models, channels, frames, scale=2.0) + shift
    return (h, rand(num_models, channels) if bias else None,
            (torch.rand(num_models, 1, generator=gen, dtype=torch.float64) * 0.5 - 0.1).to(dtype),
            1.0 + rand(num_models, channels, scale=0.3), rand(num_models, channels, scale=0.3))


def _eager(h, bias, slope, gamma, beta):
    """model/stacked.py's own eager ops, as the unfused forward pass chains them."""
    x = h if bias is None else h + bias[..., None]
    return stacked._global_layer_norm(x if slope is None else stacked._prelu(x, slope), gamma, beta)


def _forward_backward(fn, inputs, dy, dtype):
    leaves = [None if t is None else t.to(dtype).clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(dy.to(out.dtype))
    return out.detach().double(), [None if t is None else t.grad.double() for t in leaves]


def _rel(a, b) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


@pytest.mark.parametrize("bias, prelu", [(True, True), (False, True), (False, False)])
def test_reference_is_the_eager_composition(bias, prelu):
    inputs = _inputs(2, 3, 5, 37, torch.float64, shift=0.3, bias=bias)
    if not prelu:
        inputs = (inputs[0], inputs[1], None, *inputs[3:])
    dy = torch.randn(2, 3, 5, 37, dtype=torch.float64)
    out, grads = _forward_backward(prelu_gln_reference, inputs, dy, torch.float64)
    out_eager, grads_eager = _forward_backward(_eager, inputs, dy, torch.float64)
    assert _rel(out, out_eager) < 1e-12
    for grad, grad_eager in zip(grads, grads_eager):
        assert (grad is None) == (grad_eager is None)
        if grad is not None:
            assert _rel(grad, grad_eager) < 1e-12


def test_cpu_path_is_the_reference_and_shapes_are_checked():
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        assert not fused_available("cpu")
    inputs = _inputs(2, 3, 5, 37, torch.float64, shift=0.3)
    assert torch.equal(prelu_gln(*inputs), prelu_gln_reference(*inputs))
    h, bias, slope, gamma, beta = inputs
    with pytest.raises(ValueError, match="gamma must be"):
        prelu_gln(h, bias, slope, gamma[:, :4], beta)
    with pytest.raises(ValueError, match="one value per model"):
        prelu_gln(h, bias, slope[:2], gamma, beta)
    with pytest.raises(ValueError, match="unknown impl"):
        prelu_gln(*inputs, impl="cuda")
    assert torch.equal(gln(h, gamma, beta), prelu_gln_reference(h, None, None, gamma, beta))
    weight = torch.randn(3, 5, 1, 3, dtype=torch.float64)
    for dilation in (1, 4):
        assert torch.equal(conv_prelu_gln(h, weight, dilation, bias, slope, gamma, beta),
                           _eager(stacked._depthwise_conv(h, weight, None, dilation), bias, slope, gamma, beta))
    with pytest.raises(ValueError, match="weight must be"):
        conv_prelu_gln(h, weight[:2], 1, bias, slope, gamma, beta)
    score, x = torch.randn(2, 2, 3, 50, dtype=torch.float64), torch.randn(2, 2, 3, 50, dtype=torch.float64)
    assert torch.equal(sigmoid_mask(score, gamma[:2, :3], x), torch.sigmoid(score + gamma[:2, :3, None]) * x)
    with pytest.raises(ValueError, match="sigmoid_mask"):
        sigmoid_mask(score, gamma, x)


def _tiny_models(count, seed=0):
    torch.manual_seed(seed)
    models = [ConvTasNet(TINY) for _ in range(count)]
    with torch.no_grad():  # slopes, gains and shifts away from their initial values
        for model in models:
            for name, p in model.named_parameters():
                if name.endswith((".gamma", ".beta")) or "shared_block.1." in name or "shared_block.4." in name:
                    p.add_(0.2 * torch.randn_like(p))
    return models


def test_fused_stack_on_cpu_runs_the_reference():
    """The fused path's composition with the reference ops gives the eager stack's numbers."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("TRITON_INTERPRET is set: the interpreted kernels are tested in a subprocess")
    _compare_stacks(torch.float64, 1e-12)


@pytest.mark.parametrize("samples", [400, 407, 392])
def test_padded_frames_give_the_unpadded_numbers(samples):
    """The fused path's rows padded to a multiple of 8 frames (400 samples: 49
    frames + 7 of padding; 392: 48, none): the same losses and gradients as
    the eager stack, in float64, with the reference ops."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("TRITON_INTERPRET is set: the interpreted kernels are tested in a subprocess")
    _compare_stacks(torch.float64, 1e-12, frame_align=8, samples=samples)


def test_reference_ops_leave_padding_out():
    """frames=: the ops see only the signal (NaN in the padding changes nothing), write zeros past it, and
    pass zero gradients there."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("TRITON_INTERPRET is set: the interpreted kernels are tested in a subprocess")
    _check_padding(torch.float64, 0.0)


def _check_padding(dtype, tolerance) -> None:
    """Each op with frames= against itself on the signal alone: NaN in the
    padding (input and incoming gradient) changes nothing, the output and the
    input's gradient hold zeros there, the parameters' gradients are equal."""
    for frames, padding in ((40, 8), (1500, 3)):
        h, bias, slope, gamma, beta = _inputs(2, 3, 5, frames, dtype, shift=0.3, seed=frames)
        weight = torch.randn(3, 5, 1, 3, dtype=dtype)
        nan = torch.full((2, 3, 5, padding), float("nan"), dtype=dtype)
        dy = torch.randn(2, 3, 5, frames, dtype=dtype)
        cases = {
            "prelu_gln": lambda x, p, f: prelu_gln(x, *p[1:5], frames=f),
            "gln": lambda x, p, f: gln(x, p[3], p[4], frames=f),
            "conv_prelu_gln": lambda x, p, f: conv_prelu_gln(x, p[0], 4, *p[1:5], frames=f),
            "sigmoid_mask": lambda x, p, f: sigmoid_mask(x * 0.7 + 1, p[1], x, frames=f),
        }
        for name, op in cases.items():
            results = []
            for pad in (False, True):
                params = [t.clone().requires_grad_() for t in (weight, bias, slope, gamma, beta)]
                leaf = (torch.cat([h, nan], dim=-1) if pad else h).clone().requires_grad_()
                out = op(leaf, params, frames if pad else None)
                grad_out = torch.cat([dy, nan], dim=-1) if pad else dy
                out.backward(grad_out)
                if pad:
                    assert out.shape == leaf.shape and torch.all(out[..., frames:] == 0), name
                    assert torch.all(leaf.grad[..., frames:] == 0), name
                results.append([out[..., :frames], leaf.grad[..., :frames]]
                               + [p.grad for p in params if p.grad is not None])
            for a, b in zip(*results):
                assert torch.isfinite(a).all() and _rel(a, b) <= tolerance, (name, frames, _rel(a, b))
        with pytest.raises(ValueError, match="frames must be in 1.."):
            prelu_gln(torch.cat([h, nan], dim=-1), bias, slope, gamma, beta, frames=frames + padding + 1)
    print("padding: left out, zeros written")


def _compare_stacks(dtype, tolerance, frame_align=None, samples=400):
    models = _tiny_models(2)
    gen = torch.Generator().manual_seed(1)
    mixtures = torch.randn(2, 2, samples, generator=gen, dtype=dtype)
    cleans = torch.randn(2, 2, samples, generator=gen, dtype=dtype)
    results = []
    for fused in (False, "reference"):
        stack = stacked.StackedConvTasNet.from_models(models, dtype=dtype, fused=fused)
        assert stack.fused is (fused is not False) and stack.frame_align == 1
        if fused and frame_align is not None:  # what fused=True sets on a GPU
            stack.frame_align = frame_align
        losses = stack.losses(mixtures, cleans)
        stack.backward(losses.sum())
        lengths = torch.tensor([[samples, 250], [300, samples]])
        masked = stack.forward(mixtures, lengths)  # the masked path stays eager
        results.append((losses.detach(), stack.grad_flat.clone(), masked.detach()))
    (loss_e, grad_e, masked_e), (loss_f, grad_f, masked_f) = results
    # losses in dB near 0 (these models' SDRs): compared in dB where they are below 1 in size
    loss_error = float((loss_f - loss_e).abs().max() / loss_e.abs().max().clamp(min=1.0))
    assert loss_error < tolerance, (loss_f, loss_e)
    for k in range(grad_e.shape[0]):
        rel = float((grad_f[k] - grad_e[k]).norm() / grad_e[k].norm())
        assert rel < tolerance, (k, rel)
    assert torch.equal(masked_f, masked_e)
    return loss_error


def test_default_stack_is_not_fused_and_fused_needs_triton_on_the_device():
    assert stacked.StackedConvTasNet(TINY, 1).fused is False
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):  # on the CPU, fused=True keeps the eager ops
        assert stacked.StackedConvTasNet(TINY, 1, fused=True).fused is False
    with pytest.raises(ValueError, match="fused must be"):
        stacked.StackedConvTasNet(TINY, 1, fused="yes")


def _interpreted(what: str) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, what], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode == 77:
        pytest.skip(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_kernels_match_the_reference_interpreted():
    _interpreted("kernels")


def test_fused_stack_matches_eager_interpreted():
    _interpreted("stacked")


# ---- the subprocess ---------------------------------------------------------------------


def _check_kernels() -> None:
    # odd sizes (tails in both tile dimensions), several tiles along T and C,
    # no bias, a large common offset (cancellation in the variance)
    cases = [((2, 3, 5, 37), 0.0, True, True), ((2, 3, 5, 37), 0.0, False, True), ((1, 2, 9, 2100), 0.5, True, True),
             ((2, 1, 3, 50), 1e3, True, True), ((3, 2, 1, 1), 0.0, True, True),
             ((2, 3, 5, 37), 0.0, False, False), ((1, 2, 9, 2100), 1e3, False, False)]  # the last two: gLN alone
    for shape, shift, bias, prelu in cases:
        inputs = _inputs(*shape, torch.float64, shift=shift, seed=len(shape) + shape[-1], bias=bias)
        if not prelu:
            inputs = (inputs[0], inputs[1], None, *inputs[3:])
        dy = torch.randn(*shape, dtype=torch.float64)
        exact, exact_grads = _forward_backward(prelu_gln_reference, inputs, dy, torch.float64)
        ref32, ref32_grads = _forward_backward(prelu_gln_reference, inputs, dy, torch.float32)
        out, grads = _forward_backward(lambda *a: prelu_gln(*a, impl="triton"), inputs, dy, torch.float32)
        again, _ = _forward_backward(lambda *a: prelu_gln(*a, impl="triton"), inputs, dy, torch.float32)
        assert torch.equal(out, again), "not deterministic"
        # against float64: within the float32 reference's own error, or 1e-5 relative
        errors = {"out": (_rel(out, exact), _rel(ref32, exact))}
        for name, grad, ref, ex in zip(("h", "bias", "slope", "gamma", "beta"), grads, ref32_grads, exact_grads):
            if ex is not None:
                errors[name] = (_rel(grad, ex), _rel(ref, ex))
        print(shape, shift, bias, {k: f"{a:.1e} (eager fp32 {b:.1e})" for k, (a, b) in errors.items()})
        if shape[2] * shape[3] == 1:  # one element per group: only beta's gradient is meaningful
            errors = {"beta": errors["beta"]}
        for name, (fused_err, eager_err) in errors.items():
            assert fused_err < max(1e-5, 4 * eager_err), (shape, shift, name, fused_err, eager_err)
    _check_mask()
    _check_conv()
    _check_skip_buffer()
    _check_residual()
    _check_encoder_link()
    _check_decode()
    _check_padding(torch.float32, 1e-6)


def _check_skip_buffer() -> None:
    """Blocks written into a skip buffer: concat_blocks is the buffer itself
    (no copy), with torch.cat's values and gradients."""
    shape = (2, 3, 5, 600)
    blocks = [list(_inputs(*shape, torch.float32, seed=i)) for i in range(3)]
    weights = [torch.randn(3, 5, 1, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    dy = torch.randn(2, 3, 15, 600)
    results = []
    for buffered in (False, True):
        leaves = [[t.clone().requires_grad_() for t in [block[0], weight, *block[1:]]]
                  for block, weight in zip(blocks, weights)]
        buffer = fused_skip.skip_buffer(leaves[0][0], 15) if buffered else None
        assert (buffer is not None) == buffered
        outs = [conv_prelu_gln(h, w, 2 ** i, *rest, out=None if buffer is None else buffer[:, :, 5 * i:5 * i + 5])
                for i, (h, w, *rest) in enumerate(leaves)]
        joined = concat_blocks(outs, buffer)
        if buffered:
            assert joined.data_ptr() == buffer.data_ptr()
        (joined * dy).sum().backward()
        results.append((joined.detach(), [t.grad for group in leaves for t in group]))
    (joined_cat, grads_cat), (joined_buf, grads_buf) = results
    assert torch.equal(joined_cat, joined_buf)
    assert all(torch.equal(a, b) for a, b in zip(grads_cat, grads_buf))
    print("skip buffer: equal to torch.cat, values and gradients")


def _check_residual() -> None:
    """Three blocks as a ConvTasNet chains them (input_conv, the two chains
    into a skip buffer, residual_conv): the residual convs add into the skip
    buffer's gradient and the input convs into the residual stream's in place
    (SkipGrad filled), with the gradients of autograd's adds and the eager ops."""
    shape, width = (2, 3, 5, 600), 4  # 5 hidden channels, a residual stream of 4
    gen = torch.Generator().manual_seed(5)
    blocks = [list(_inputs(*shape, torch.float32, seed=10 + i))[1:] for i in range(3)]
    conv_weights = [torch.randn(3, 5, 1, 3, generator=gen) for _ in range(3)]
    in_weights = [torch.randn(3, 5, width, generator=gen) for _ in range(3)]
    res = [(torch.randn(3, width, 5, generator=gen), torch.randn(3, width, generator=gen)) for _ in range(2)]
    start = torch.randn(2, 3, width, 600, generator=gen)
    dy_skip, dy_out = torch.randn(2, 3, 15, 600, generator=gen), torch.randn(2, 3, width, 600, generator=gen)
    results = {}
    for variant in ("in place", "autograd add", "eager"):
        leaves = [[t.clone().requires_grad_() for t in [w_in, w, *block]]
                  for block, w, w_in in zip(blocks, conv_weights, in_weights)]
        res_leaves = [[t.clone().requires_grad_() for t in pair] for pair in res]
        stream = start.clone().requires_grad_()
        buffer = fused_skip.skip_buffer(stream, 15)
        skip_grad = fused_skip.SkipGrad(buffer) if variant == "in place" else None
        outs, links, out = [], [], stream
        for i, (w_in, w, *rest) in enumerate(leaves):
            links.append(GradLink() if variant == "in place" and i < 2 else None)
            if variant == "eager":  # the 1x1 convs as plain matrix products, autograd adding the gradients
                h = torch.matmul(w_in, out)
            else:
                h = fused_skip.input_conv(out, w_in, links[-1])
            outs.append(conv_prelu_gln(h, w, 2 ** i, *rest, out=buffer[:, :, 5 * i:5 * i + 5]))
            if i < 2 and variant == "eager":
                res_weight, res_bias = res_leaves[i]
                out = out + (torch.matmul(res_weight, outs[-1]) + res_bias[..., None])
            elif i < 2:
                out = fused_skip.residual_conv(out, outs[-1], *res_leaves[i], skip_grad, links[-1])
        joined = concat_blocks(outs, buffer, skip_grad)
        ((joined * dy_skip).sum() + (out * dy_out).sum()).backward()
        if variant == "in place":
            assert skip_grad.grad is not None and skip_grad.channels(outs[1]) == 5
            assert all(link.grad is not None for link in links[:2])
        results[variant] = [t.grad for group in leaves + res_leaves for t in group] + [stream.grad]
    _same_gradients(results, "in place", "residual and input convs adding in place")


def _check_encoder_link() -> None:
    """x through the bottleneck gln and later the mask, linked: the gLN's
    backward adds its part of x's gradient into the mask's in place; the same
    gradients as without the link, and with the gLN unfused (the mask then
    keeps its gradient, so none is lost)."""
    shape = (2, 3, 7, 300)
    gen = torch.Generator().manual_seed(7)
    x0, score0 = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
    gamma0, beta0, bias0 = (torch.randn(3, 7, generator=gen) for _ in range(3))
    dy = torch.randn(*shape, generator=gen)
    results = {}
    for variant in ("linked", "unlinked", "gln unfused"):
        x, score, gamma, beta, bias = (t.clone().requires_grad_() for t in (x0, score0, gamma0, beta0, bias0))
        link = GradLink() if variant != "unlinked" else None
        if variant == "gln unfused":
            normed = prelu_gln(x, None, None, gamma, beta, impl="reference", frames=290, link=link)
        else:
            normed = gln(x, gamma, beta, frames=290, link=link)
        out = sigmoid_mask(score * normed, bias, x, frames=290, link=link)
        out.backward(dy)
        assert (link is not None and link.accepts) == (variant == "linked")
        results[variant] = [x.grad, score.grad, gamma.grad, beta.grad, bias.grad]
    _same_gradients(results, "linked", "encoder output's gradient added in place")


def _same_gradients(results: dict, first: str, label: str, tolerance: float = 1e-5) -> None:
    """Every variant's gradients (lists of tensors) against those of `first`."""
    for variant, grads in results.items():
        if variant != first:
            worst = max(_rel(a, b) for a, b in zip(results[first], grads))
            print(f"{label} vs {variant}: {worst:.1e}")
            assert worst < tolerance, (variant, worst)


def _check_decode() -> None:
    """mask_decode (the mask's product and the decoder's matrix product in one
    kernel) against float64, with padding (NaN there changes nothing) and
    several tiles along C and T; and linked to a gln of x."""
    torch.backends.cuda.matmul.allow_tf32 = False  # the kernels' dots in full float32 ("ieee")
    for (shape, length), frames in ((((2, 3, 40, 300), 16), 290), (((1, 2, 16, 37), 8), None)):
        gen = torch.Generator().manual_seed(shape[2])
        inputs = [torch.randn(*shape, generator=gen, dtype=torch.float64) * 3,
                  torch.randn(*shape[1:3], generator=gen, dtype=torch.float64),
                  torch.randn(*shape, generator=gen, dtype=torch.float64),
                  torch.randn(shape[1], shape[2], length, generator=gen, dtype=torch.float64)]
        dy = torch.randn(shape[0], shape[1], length, shape[3], generator=gen, dtype=torch.float64)
        if frames is not None:  # NaN in the padding of score and x, a large incoming gradient there
            for t in (inputs[0], inputs[2]):
                t[..., frames:] = float("nan")
            dy[..., frames:] = 1e3

        def run(impl, frames=frames):
            return lambda *args: mask_decode(*args, impl=impl, frames=frames)

        exact, exact_grads = _forward_backward(run("reference"), inputs, dy, torch.float64)
        out, grads = _forward_backward(run("triton"), inputs, dy, torch.float32)
        again, again_grads = _forward_backward(run("triton"), inputs, dy, torch.float32)
        assert torch.equal(out, again) and all(torch.equal(a, b) for a, b in zip(grads, again_grads))
        signal = slice(None, frames)
        errors = {name: _rel(g[..., signal] if g.dim() == 4 else g, e[..., signal] if e.dim() == 4 else e)
                  for name, g, e in zip(("score", "bias", "x", "weight"), grads, exact_grads)}
        errors["out"] = _rel(out[..., signal], exact[..., signal])
        print("decode", shape, length, frames, {k: f"{v:.1e}" for k, v in errors.items()})
        assert max(errors.values()) < 1e-5, errors
        if frames is not None:
            assert torch.all(out[..., frames:] == 0) and torch.all(grads[0][..., frames:] == 0)
            assert torch.all(grads[2][..., frames:] == 0)
    # linked to the gln of x: the same gradients as unlinked
    shape = (2, 3, 32, 200)
    gen = torch.Generator().manual_seed(3)
    x0, score0 = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
    gamma0, beta0, bias0 = (torch.randn(3, 32, generator=gen) for _ in range(3))
    weight0, dy = torch.randn(3, 32, 16, generator=gen), torch.randn(2, 3, 16, 200, generator=gen)
    results = {}
    for linked in (True, False):
        x, score, gamma, beta, bias, weight = (t.clone().requires_grad_()
                                               for t in (x0, score0, gamma0, beta0, bias0, weight0))
        link = GradLink() if linked else None
        normed = gln(x, gamma, beta, link=link)
        mask_decode(score * normed, bias, x, weight, link=link).backward(dy)
        results["linked" if linked else "unlinked"] = [x.grad, score.grad, gamma.grad, beta.grad, bias.grad,
                                                       weight.grad]
    _same_gradients(results, "linked", "decode linked to the gln", 1e-6)


def _check_conv() -> None:
    """The depthwise conv inside the kernels: dilations reaching across tiles
    along T (forward 1024 frames, backward 512) and past both ends."""
    for shape, dilation in (((2, 3, 5, 37), 1), ((2, 3, 5, 37), 16), ((1, 2, 9, 2100), 64), ((1, 2, 3, 700), 2)):
        inputs = list(_inputs(*shape, torch.float64, shift=0.2, seed=shape[-1] + dilation))
        weight = torch.randn(shape[1], shape[2], 1, 3, generator=torch.Generator().manual_seed(dilation),
                             dtype=torch.float64)
        inputs.insert(1, weight)
        dy = torch.randn(*shape, dtype=torch.float64)

        def run(impl, dilation=dilation):
            return lambda h, w, *rest: conv_prelu_gln(h, w, dilation, *rest, impl=impl)

        exact, exact_grads = _forward_backward(run("reference"), inputs, dy, torch.float64)
        ref32, ref32_grads = _forward_backward(run("reference"), inputs, dy, torch.float32)
        out, grads = _forward_backward(run("triton"), inputs, dy, torch.float32)
        again, again_grads = _forward_backward(run("triton"), inputs, dy, torch.float32)
        assert torch.equal(out, again) and all(torch.equal(a, b) for a, b in zip(grads, again_grads))
        errors = {"out": (_rel(out, exact), _rel(ref32, exact))}
        for name, grad, ref, ex in zip(("h", "weight", "bias", "slope", "gamma", "beta"), grads, ref32_grads,
                                       exact_grads):
            errors[name] = (_rel(grad, ex), _rel(ref, ex))
        print("conv", shape, dilation, {k: f"{a:.1e} (eager fp32 {b:.1e})" for k, (a, b) in errors.items()})
        for name, (fused_err, eager_err) in errors.items():
            assert fused_err < max(1e-5, 4 * eager_err), (shape, dilation, name, fused_err, eager_err)


def _check_mask() -> None:
    for shape in ((2, 3, 5, 37), (1, 2, 9, 2100)):
        gen = torch.Generator().manual_seed(shape[-1])
        inputs = [torch.randn(*shape, generator=gen, dtype=torch.float64) * 3,
                  torch.randn(*shape[1:3], generator=gen, dtype=torch.float64),
                  torch.randn(*shape, generator=gen, dtype=torch.float64)]
        dy = torch.randn(*shape, generator=gen, dtype=torch.float64)
        exact, exact_grads = _forward_backward(sigmoid_mask_reference, inputs, dy, torch.float64)
        out, grads = _forward_backward(lambda *a: sigmoid_mask(*a, impl="triton"), inputs, dy, torch.float32)
        again, again_grads = _forward_backward(lambda *a: sigmoid_mask(*a, impl="triton"), inputs, dy, torch.float32)
        assert torch.equal(out, again) and all(torch.equal(a, b) for a, b in zip(grads, again_grads))
        errors = {name: _rel(g, e) for name, g, e in zip(("score", "bias", "x"), grads, exact_grads)}
        errors["out"] = _rel(out, exact)
        print("mask", shape, {k: f"{v:.1e}" for k, v in errors.items()})
        assert max(errors.values()) < 1e-5, errors


def _check_stacked() -> None:
    rel = _compare_stacks(torch.float32, 1e-5)
    print(f"fused vs eager stack, float32: losses {rel:.1e}")
    assert stacked.StackedConvTasNet(TINY, 2, fused=True).frame_align == stacked.FRAME_ALIGN
    for samples in (400, 407):  # 49 frames, padded to 56
        rel = _compare_stacks(torch.float32, 1e-5, frame_align=stacked.FRAME_ALIGN, samples=samples)
        print(f"fused with padded frames vs eager stack, float32, {samples} samples: losses {rel:.1e}")


if __name__ == "__main__":
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        print(f"Triton cannot be imported here: {exc}")
        sys.exit(77)
    assert fused_available("cpu"), "TRITON_INTERPRET=1 must be set"
    {"kernels": _check_kernels, "stacked": _check_stacked}[sys.argv[1]]()
    print("ok")
