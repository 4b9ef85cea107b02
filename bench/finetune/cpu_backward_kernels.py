"""torch's PReLU and sigmoid backward kernels on the CPU against plain tensor operations that give
the same gradients to the bit, one thread, at the demo's shapes (ConvTasNet tiny, batch 8 x 1 s).

    python bench/finetune/cpu_backward_kernels.py [--repeats 50]

PReLU: a forward and backward of an (8, 32, 2000) tensor (a TCN block's hidden channels) with one
slope; the candidate is a custom autograd function whose backward is `torch.where` for the input's
gradient and, for the slope's, the per-element gradient summed as autograd sums torch's. Sigmoid: the
backward of the mask, (8, 512, 2000), as `g * (1 - y) * y`. Each is timed over `--repeats` calls after
one untimed call. Prints the milliseconds a call of each, the ratio (torch's over the candidate's: > 1
means the candidate is faster), whether the gradients are equal to the bit, and a verdict.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


class PlainPReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return F.prelu(x, weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        positive = x > 0
        return torch.where(positive, grad, weight * grad), torch.where(positive, 0.0, x * grad).sum().reshape(1)


def _ms(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    x = torch.randn(8, 32, 2000, requires_grad=True)
    slope = torch.tensor([0.25], requires_grad=True)
    grad = torch.randn(8, 32, 2000)
    kernels = {
        "prelu": (lambda: torch.autograd.grad(F.prelu(x, slope), (x, slope), grad),
                  lambda: torch.autograd.grad(PlainPReLU.apply(x, slope), (x, slope), grad)),
    }
    y = torch.sigmoid(torch.randn(8, 512, 2000))
    grad_mask = torch.randn_like(y)
    kernels["sigmoid"] = (lambda: (torch.ops.aten.sigmoid_backward(grad_mask, y),),
                          lambda: (grad_mask * (1 - y) * y,))

    print("| backward | torch (ms) | plain ops (ms) | torch / plain | equal to the bit |")
    print("|---|---|---|---|---|")
    verdicts = []
    for name, (torch_fn, plain_fn) in kernels.items():
        equal = all(torch.equal(a, b) for a, b in zip(torch_fn(), plain_fn()))
        torch_ms, plain_ms = _ms(torch_fn, args.repeats), _ms(plain_fn, args.repeats)
        print(f"| {name} | {torch_ms:.2f} | {plain_ms:.2f} | {torch_ms / plain_ms:.2f} | {'yes' if equal else 'no'} |")
        verdicts.append(f"{name}: plain ops {'faster' if plain_ms < torch_ms else 'not faster'}"
                        f"{'' if equal else ', gradients differ'}")
    print("verdict: " + "; ".join(verdicts))


if __name__ == "__main__":
    main()
