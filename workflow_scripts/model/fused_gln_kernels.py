"""Triton kernels of workflow_scripts/model/fused_gln.py and fused_mask.py (imported only where Triton is).

Tiles of BLOCK_C channels x BLOCK_T frames of one (example, model) group,
grid (tiles along TS, tiles along C, batch x K); every reduction writes
per-tile partials that a later kernel or a fixed-order torch sum combines.

Rows hold TS frames of which the first T are the signal: frames T..TS-1 are
padding (rows padded so that the 1x1 convs' matrix products run aligned). They
are read as zeros, left out of every sum, and every tensor a kernel writes
holds zeros there.
"""

import triton
import triton.language as tl


@triton.jit
def load_tile(h_ptr, bias_ptr, slope_ptr, g, k, C, T, TS, HAS_BIAS: tl.constexpr, HAS_PRELU: tl.constexpr,
              BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, HAS_CONV: tl.constexpr, w_ptr, D):
    rows, row_ok, mask, stored, offsets = tile(g, C, T, TS, BLOCK_C, BLOCK_T)
    cols = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    x = tl.load(h_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_CONV:  # x = the depthwise conv of h: kernel 3, dilation D, "same" zero padding
        x = x * tl.load(w_ptr + (k * C + rows) * 3 + 1, mask=row_ok, other=0.0)[:, None]
        x += tl.load(h_ptr + offsets - D, mask=mask & (cols >= D)[None, :], other=0.0) * tl.load(
            w_ptr + (k * C + rows) * 3, mask=row_ok, other=0.0)[:, None]
        x += tl.load(h_ptr + offsets + D, mask=mask & (cols + D < T)[None, :], other=0.0) * tl.load(
            w_ptr + (k * C + rows) * 3 + 2, mask=row_ok, other=0.0)[:, None]
    if HAS_BIAS:
        x = x + tl.load(bias_ptr + k * C + rows, mask=row_ok, other=0.0)[:, None]
    if HAS_PRELU:
        slope = tl.load(slope_ptr + k)
        a = tl.where(x > 0, x, slope * x)
    else:
        a = x
    return rows, row_ok, mask, stored, offsets, x, a


@triton.jit
def tile(g, C, T, TS, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """This program's rows, their validity, the signal's mask, the written
    frames' mask (signal and padding) and the element offsets."""
    rows = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cols = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    row_ok = rows < C
    mask = row_ok[:, None] & (cols < T)[None, :]
    stored = row_ok[:, None] & (cols < TS)[None, :]
    offsets = g.to(tl.int64) * C * TS + rows[:, None].to(tl.int64) * TS + cols[None, :]
    return rows, row_ok, mask, stored, offsets


@triton.jit
def fwd_stats(h_ptr, bias_ptr, slope_ptr, count_ptr, mean_ptr, m2_ptr, K, C, T, TS, w_ptr, D,
               HAS_BIAS: tl.constexpr, HAS_PRELU: tl.constexpr, HAS_CONV: tl.constexpr,
               BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    g = tl.program_id(2)
    k = g % K
    _, _, mask, _, _, _, a = load_tile(
        h_ptr, bias_ptr, slope_ptr, g, k, C, T, TS, HAS_BIAS, HAS_PRELU, BLOCK_C, BLOCK_T, HAS_CONV, w_ptr, D)
    count = tl.sum(tl.sum(mask.to(tl.float32), 1), 0)
    mean = tl.sum(tl.sum(tl.where(mask, a, 0.0), 1), 0) / tl.maximum(count, 1.0)  # 0 for a tile of padding
    centred = tl.where(mask, a - mean, 0.0)
    m2 = tl.sum(tl.sum(centred * centred, 1), 0)
    part = (g * tl.num_programs(1) + tl.program_id(1)) * tl.num_programs(0) + tl.program_id(0)
    tl.store(count_ptr + part, count)
    tl.store(mean_ptr + part, mean)
    tl.store(m2_ptr + part, m2)


@triton.jit
def group_stats(count_ptr, mean_ptr, m2_ptr, g, num_parts, eps, BLOCK_P: tl.constexpr):
    """Chan's merge of a group's tile statistics -> (mean, 1/std)."""
    index = tl.arange(0, BLOCK_P)
    ok = index < num_parts
    base = g * num_parts
    count = tl.load(count_ptr + base + index, mask=ok, other=0.0)
    means = tl.load(mean_ptr + base + index, mask=ok, other=0.0)
    m2 = tl.load(m2_ptr + base + index, mask=ok, other=0.0)
    total = tl.sum(count, 0)
    mean = tl.sum(count * means, 0) / total
    spread = means - mean
    var = (tl.sum(m2, 0) + tl.sum(count * spread * spread, 0)) / total
    return mean, 1.0 / tl.sqrt(var + eps)


@triton.jit
def fwd_apply(h_ptr, bias_ptr, slope_ptr, gamma_ptr, beta_ptr, count_ptr, mean_part_ptr, m2_ptr,
               out_ptr, out_stride, mean_ptr, rstd_ptr, K, C, T, TS, eps, w_ptr, D,
               HAS_BIAS: tl.constexpr, HAS_PRELU: tl.constexpr, HAS_CONV: tl.constexpr,
               BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr):
    g = tl.program_id(2)
    k = g % K
    num_parts = tl.num_programs(0) * tl.num_programs(1)
    mean, rstd = group_stats(count_ptr, mean_part_ptr, m2_ptr, g, num_parts, eps, BLOCK_P)
    if (tl.program_id(0) == 0) & (tl.program_id(1) == 0):
        tl.store(mean_ptr + g, mean)
        tl.store(rstd_ptr + g, rstd)
    rows, row_ok, mask, stored, offsets, _, a = load_tile(
        h_ptr, bias_ptr, slope_ptr, g, k, C, T, TS, HAS_BIAS, HAS_PRELU, BLOCK_C, BLOCK_T, HAS_CONV, w_ptr, D)
    gamma = tl.load(gamma_ptr + k * C + rows, mask=row_ok, other=0.0)
    beta = tl.load(beta_ptr + k * C + rows, mask=row_ok, other=0.0)
    y = tl.where(mask, (a - mean) * rstd * gamma[:, None] + beta[:, None], 0.0)
    # out: rows of TS frames, `out_stride` elements from one group (example, model) to the next
    out_offsets = offsets + g.to(tl.int64) * (out_stride - C * TS)
    tl.store(out_ptr + out_offsets, y, mask=stored)


@triton.jit
def bwd_reduce(h_ptr, dy_ptr, dy_stride, bias_ptr, slope_ptr, gamma_ptr, mean_ptr, rstd_ptr,
                s1_ptr, s2_ptr, dgamma_ptr, dbeta_ptr, K, C, T, TS, w_ptr, D,
                HAS_BIAS: tl.constexpr, HAS_PRELU: tl.constexpr, HAS_CONV: tl.constexpr,
               BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """Per tile: sum(gamma dy), sum(gamma dy xhat); per row: sum_t dy xhat, sum_t dy."""
    g = tl.program_id(2)
    k = g % K
    rows, row_ok, mask, _, offsets, _, a = load_tile(
        h_ptr, bias_ptr, slope_ptr, g, k, C, T, TS, HAS_BIAS, HAS_PRELU, BLOCK_C, BLOCK_T, HAS_CONV, w_ptr, D)
    # dy: rows of TS frames, `dy_stride` elements from one group to the next (a skip buffer's slice)
    dy = tl.load(dy_ptr + offsets + g.to(tl.int64) * (dy_stride - C * TS), mask=mask, other=0.0).to(tl.float32)
    xhat = (a - tl.load(mean_ptr + g)) * tl.load(rstd_ptr + g)
    gamma = tl.load(gamma_ptr + k * C + rows, mask=row_ok, other=0.0)
    dy_xhat = tl.where(mask, dy * xhat, 0.0)
    row_dgamma = tl.sum(dy_xhat, 1)
    row_dbeta = tl.sum(dy, 1)
    part = (g * tl.num_programs(1) + tl.program_id(1)) * tl.num_programs(0) + tl.program_id(0)
    tl.store(s1_ptr + part, tl.sum(row_dbeta * gamma, 0))
    tl.store(s2_ptr + part, tl.sum(row_dgamma * gamma, 0))
    # per-row partials, laid out (G, C, tiles along T)
    row_part = (g.to(tl.int64) * C + rows) * tl.num_programs(0) + tl.program_id(0)
    tl.store(dgamma_ptr + row_part, row_dgamma, mask=row_ok)
    tl.store(dbeta_ptr + row_part, row_dbeta, mask=row_ok)


@triton.jit
def bwd_apply(h_ptr, dy_ptr, dy_stride, bias_ptr, slope_ptr, gamma_ptr, mean_ptr, rstd_ptr, s1_ptr, s2_ptr,
               dh_ptr, dbias_ptr, dslope_ptr, K, C, T, TS, inv_count, w_ptr, D,
               HAS_BIAS: tl.constexpr, HAS_PRELU: tl.constexpr, HAS_CONV: tl.constexpr,
               BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, ACCUMULATE: tl.constexpr = False):
    """dh (ACCUMULATE: dh += the gradient, in place), d(bias) per-row and d(slope) per-tile partials."""
    g = tl.program_id(2)
    k = g % K
    num_parts = tl.num_programs(0) * tl.num_programs(1)
    index = tl.arange(0, BLOCK_P)
    ok = index < num_parts
    mean_gdy = tl.sum(tl.load(s1_ptr + g * num_parts + index, mask=ok, other=0.0), 0) * inv_count
    mean_gdy_xhat = tl.sum(tl.load(s2_ptr + g * num_parts + index, mask=ok, other=0.0), 0) * inv_count
    rows, row_ok, mask, stored, offsets, x, a = load_tile(
        h_ptr, bias_ptr, slope_ptr, g, k, C, T, TS, HAS_BIAS, HAS_PRELU, BLOCK_C, BLOCK_T, HAS_CONV, w_ptr, D)
    dy = tl.load(dy_ptr + offsets + g.to(tl.int64) * (dy_stride - C * TS), mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(rstd_ptr + g)
    xhat = (a - tl.load(mean_ptr + g)) * rstd
    gamma = tl.load(gamma_ptr + k * C + rows, mask=row_ok, other=0.0)
    da = rstd * (gamma[:, None] * dy - mean_gdy - xhat * mean_gdy_xhat)
    if HAS_PRELU:
        slope = tl.load(slope_ptr + k)
        positive = x > 0
        dx = tl.where(positive, da, slope * da)
        dslope = tl.where(mask & ~positive, x * da, 0.0)
        part = (g * tl.num_programs(1) + tl.program_id(1)) * tl.num_programs(0) + tl.program_id(0)
        tl.store(dslope_ptr + part, tl.sum(tl.sum(dslope, 1), 0))
    else:
        dx = da
    dx = tl.where(mask, dx, 0.0)
    if ACCUMULATE:
        tl.store(dh_ptr + offsets, dx + tl.load(dh_ptr + offsets, mask=mask, other=0.0), mask=stored)
    else:
        tl.store(dh_ptr + offsets, dx, mask=stored)
    if HAS_BIAS:
        row_part = (g.to(tl.int64) * C + rows) * tl.num_programs(0) + tl.program_id(0)
        tl.store(dbias_ptr + row_part, tl.sum(dx, 1), mask=row_ok)


@triton.jit
def mask_fwd(score_ptr, bias_ptr, x_ptr, out_ptr, K, C, T, TS, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """out = sigmoid(score + bias) * x."""
    g = tl.program_id(2)
    k = g % K
    _, _, mask, stored, offsets, s, _ = load_tile(
        score_ptr, bias_ptr, bias_ptr, g, k, C, T, TS, True, False, BLOCK_C, BLOCK_T, False, bias_ptr, 1)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    tl.store(out_ptr + offsets, tl.where(mask, tl.sigmoid(s) * x, 0.0), mask=stored)


@triton.jit
def mask_bwd(score_ptr, bias_ptr, x_ptr, dy_ptr, dscore_ptr, dx_ptr, dbias_ptr, K, C, T, TS,
             BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """d(score) and dx of sigmoid(score + bias) * x; per-row partial sums of d(score)."""
    g = tl.program_id(2)
    k = g % K
    rows, row_ok, mask, stored, offsets, s, _ = load_tile(
        score_ptr, bias_ptr, bias_ptr, g, k, C, T, TS, True, False, BLOCK_C, BLOCK_T, False, bias_ptr, 1)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0)
    store_mask_grads(s, x, dy, g, rows, row_ok, mask, stored, offsets, C, dx_ptr, dscore_ptr, dbias_ptr)


@triton.jit
def store_mask_grads(s, x, dmasked, g, rows, row_ok, mask, stored, offsets, C, dx_ptr, dscore_ptr, dbias_ptr):
    """For masked = sigmoid(s) * x and its gradient dmasked: writes dx and d(score) (zeros in the
    padding) and the per-row partials of d(bias); returns sigmoid(s)."""
    sig = tl.sigmoid(s)
    tl.store(dx_ptr + offsets, tl.where(mask, dmasked * sig, 0.0), mask=stored)
    ds = tl.where(mask, dmasked * x * sig * (1.0 - sig), 0.0)
    tl.store(dscore_ptr + offsets, ds, mask=stored)
    row_part = (g.to(tl.int64) * C + rows) * tl.num_programs(0) + tl.program_id(0)
    tl.store(dbias_ptr + row_part, tl.sum(ds, 1), mask=row_ok)
    return sig


@triton.jit
def conv_bwd(dx_ptr, h_ptr, w_ptr, dh_ptr, dw_ptr, K, C, T, TS, D, BLOCK_C: tl.constexpr,
             BLOCK_T: tl.constexpr):
    """Backward of x = depthwise conv of h (kernel 3, dilation D, "same"): dh,
    and per-row partials of the three weight gradients, laid out (3, G, C,
    tiles along T)."""
    g = tl.program_id(2)
    k = g % K
    rows, row_ok, mask, stored, offsets = tile(g, C, T, TS, BLOCK_C, BLOCK_T)
    cols = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    left = mask & (cols >= D)[None, :]
    right = mask & (cols + D < T)[None, :]
    w0 = tl.load(w_ptr + (k * C + rows) * 3, mask=row_ok, other=0.0)[:, None]
    w1 = tl.load(w_ptr + (k * C + rows) * 3 + 1, mask=row_ok, other=0.0)[:, None]
    w2 = tl.load(w_ptr + (k * C + rows) * 3 + 2, mask=row_ok, other=0.0)[:, None]
    dx = tl.load(dx_ptr + offsets, mask=mask, other=0.0)
    dh = w1 * dx + w0 * tl.load(dx_ptr + offsets + D, mask=right, other=0.0)
    dh += w2 * tl.load(dx_ptr + offsets - D, mask=left, other=0.0)
    tl.store(dh_ptr + offsets, tl.where(mask, dh, 0.0), mask=stored)
    row_part = (g.to(tl.int64) * C + rows) * tl.num_programs(0) + tl.program_id(0)
    plane = tl.num_programs(2).to(tl.int64) * C * tl.num_programs(0)
    h_left = tl.load(h_ptr + offsets - D, mask=left, other=0.0)
    tl.store(dw_ptr + row_part, tl.sum(dx * h_left, 1), mask=row_ok)
    h = tl.load(h_ptr + offsets, mask=mask, other=0.0)
    tl.store(dw_ptr + plane + row_part, tl.sum(dx * h, 1), mask=row_ok)
    h_right = tl.load(h_ptr + offsets + D, mask=right, other=0.0)
    tl.store(dw_ptr + 2 * plane + row_part, tl.sum(dx * h_right, 1), mask=row_ok)


@triton.jit
def decode_fwd(score_ptr, bias_ptr, x_ptr, w_ptr, out_ptr, K, C, T, TS, L, BLOCK_C: tl.constexpr,
               BLOCK_T: tl.constexpr, BLOCK_L: tl.constexpr, PRECISION: tl.constexpr):
    """out (L rows) = w^T (sigmoid(score + bias) * x): the mask's product and the decoder's matrix
    product (w (K, C, L)) in one pass, the masked tensor never stored. Grid (tiles along TS, groups)."""
    g = tl.program_id(1)
    k = g % K
    cols = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    col_ok = cols < T
    ls = tl.arange(0, BLOCK_L)
    l_ok = ls < L
    acc = tl.zeros((BLOCK_L, BLOCK_T), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        rows = c0 + tl.arange(0, BLOCK_C)
        row_ok = rows < C
        mask = row_ok[:, None] & col_ok[None, :]
        offsets = g.to(tl.int64) * C * TS + rows[:, None].to(tl.int64) * TS + cols[None, :]
        s = tl.load(score_ptr + offsets, mask=mask, other=0.0) + tl.load(
            bias_ptr + k * C + rows, mask=row_ok, other=0.0)[:, None]
        masked = tl.where(mask, tl.sigmoid(s) * tl.load(x_ptr + offsets, mask=mask, other=0.0), 0.0)
        w_t = tl.load(w_ptr + (k * C + rows[None, :]) * L + ls[:, None], mask=l_ok[:, None] & row_ok[None, :],
                      other=0.0)
        acc = tl.dot(w_t, masked, acc, input_precision=PRECISION)
    out_offsets = g.to(tl.int64) * L * TS + ls[:, None] * TS + cols[None, :]
    tl.store(out_ptr + out_offsets, tl.where(col_ok[None, :], acc, 0.0), mask=l_ok[:, None] & (cols < TS)[None, :])


@triton.jit
def decode_bwd(score_ptr, bias_ptr, x_ptr, w_ptr, dy_ptr, dscore_ptr, dx_ptr, dbias_ptr, dw_ptr, K, C, T, TS, L,
               BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_L: tl.constexpr, PRECISION: tl.constexpr):
    """Backward of decode_fwd from dy (L rows): d(score) and dx written, the gradient at the masked
    tensor (w dy) computed in place; per-row partials of d(bias), and per-tile partials of dw laid
    out (G, tiles along TS, C, L)."""
    g = tl.program_id(2)
    k = g % K
    rows, row_ok, mask, stored, offsets, s, _ = load_tile(
        score_ptr, bias_ptr, bias_ptr, g, k, C, T, TS, True, False, BLOCK_C, BLOCK_T, False, bias_ptr, 1)
    cols = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ls = tl.arange(0, BLOCK_L)
    l_ok = ls < L
    dy = tl.load(dy_ptr + g.to(tl.int64) * L * TS + ls[:, None] * TS + cols[None, :],
                 mask=l_ok[:, None] & (cols < T)[None, :], other=0.0)
    w = tl.load(w_ptr + (k * C + rows[:, None]) * L + ls[None, :], mask=row_ok[:, None] & l_ok[None, :], other=0.0)
    dmasked = tl.dot(w, dy, input_precision=PRECISION)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    sig = store_mask_grads(s, x, dmasked, g, rows, row_ok, mask, stored, offsets, C, dx_ptr, dscore_ptr, dbias_ptr)
    masked = tl.where(mask, sig * x, 0.0)
    dw = tl.dot(masked, tl.trans(dy), input_precision=PRECISION)
    dw_offsets = ((g.to(tl.int64) * tl.num_programs(0) + tl.program_id(0)) * C + rows[:, None]) * L + ls[None, :]
    tl.store(dw_ptr + dw_offsets, dw, mask=row_ok[:, None] & l_ok[None, :])
