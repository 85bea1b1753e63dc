"""Time and peak memory of the fused kernels against PyTorch peers on AlphaFold's shapes (GPU only).

Attention (bf16): MSA row attention with pair bias (8 heads x 32), triangle attention (4 x 32) and
extra-MSA row attention (8 x 8), each with a key mask and a sigmoid gate. Peers: the naive PyTorch
twin, ``scaled_dot_product_attention`` with the pair bias and mask offset summed into one additive
float mask, and FlexAttention with the bias and mask in its ``score_mod``. Forward is timed without
autograd; forward+backward computes gradients of q, k, v, the pair bias and the gate. Peak memory is
the allocator's peak during one forward+backward above what the inputs already hold. LayerNorm (bf16,
128 and 256 channels) is compared with ``torch.nn.functional.layer_norm`` and a device copy. The
triangle multiplicative update (bf16 pair, float32 parameters as in the model, C_z = c = 128), its three
stages as the model's module runs them, is compared with the same stages' PyTorch twins, forward and
forward+backward (gradients of the pair and every weight).

Usage: ``python scripts/benchmark_kernels.py [--quick] [--only attention|triangle|layer_norm]
[--markdown PATH]``.
"""

import argparse
import datetime
import platform

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from fastfold.kernels import ops
from fastfold.kernels.attention import attention_torch
from fastfold.kernels.softmax import mask_to_bias
from fastfold.kernels.triangle_multiplication import (
    TriangleOutputWeights,
    TriangleProjectionWeights,
    triangle_output_torch,
    triangle_product,
    triangle_projections_torch,
)


def attention_sdpa(q, k, v, biases, mask, gate):
    """SDPA with the mask offset and the biases summed into one additive mask (materialised per row)."""
    lead = q.shape[:-3]
    additive = mask_to_bias(mask).to(q.dtype)
    for bias in biases:
        additive = additive + bias
    additive = additive.expand(*lead, *additive.shape[-3:]).reshape(-1, *additive.shape[-3:])
    flat = [t.reshape(-1, *t.shape[-3:]) for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*flat, attn_mask=additive).reshape(q.shape)
    return out * torch.sigmoid(gate)


_flex_compiled = None


def attention_flex(q, k, v, biases, mask, gate):
    """FlexAttention with ``score + mask offset + pair bias`` in its score_mod (rows as its batch)."""
    global _flex_compiled
    from torch.nn.attention.flex_attention import flex_attention

    if _flex_compiled is None:
        # one compiled kernel per shape and grad mode: above dynamo's default limit of 8 it would fall
        # back silently to the unfused implementation
        torch._dynamo.config.recompile_limit = 64
        _flex_compiled = torch.compile(flex_attention, dynamic=False)
    (bias,) = biases
    rows = q.shape[1]
    bias = bias[0, 0]  # [H, Q, K], shared by all rows
    key_offset = mask_to_bias(mask[0, :, 0, 0]).to(q.dtype)  # [rows, K]

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + key_offset[b, kv_idx] + bias[h, q_idx, kv_idx]

    flat = [t.reshape(rows, *t.shape[-3:]) for t in (q, k, v)]
    out = _flex_compiled(*flat, score_mod=score_mod).reshape(q.shape)
    return out * torch.sigmoid(gate)


IMPLEMENTATIONS = {"fastfold": ops.attention, "naive": attention_torch, "sdpa": attention_sdpa,
                   "flex": attention_flex}

# (case, rows, N_res, heads, c): MSA row attention, triangle attention (rows = N_res), extra-MSA rows
CASES = [("msa_row", 128, 256, 8, 32), ("msa_row", 128, 384, 8, 32), ("msa_row", 128, 768, 8, 32),
         ("msa_row", 512, 256, 8, 32), ("msa_row", 512, 384, 8, 32), ("msa_row", 512, 768, 8, 32),
         ("triangle", 256, 256, 4, 32), ("triangle", 384, 384, 4, 32), ("triangle", 768, 768, 4, 32),
         ("extra_msa", 1024, 384, 8, 8)]


def _inputs(rows, n, heads, c, dtype=torch.bfloat16):
    def leaf(*shape):
        return torch.randn(*shape, device="cuda", dtype=dtype, requires_grad=True)

    q, k, v, gate = (leaf(1, rows, heads, n, c) for _ in range(4))
    pair_bias = leaf(1, 1, heads, n, n)
    mask = torch.rand(1, rows, 1, 1, n, device="cuda") > 0.1
    return q, k, v, pair_bias, gate, mask


def _measure(fn, inputs):
    """(forward ms, forward+backward ms, peak MiB over inputs) for one implementation; None where it fails."""
    q, k, v, bias, gate, mask = inputs
    leaves = (q, k, v, bias, gate)

    def forward():
        with torch.no_grad():
            return fn(q, k, v, [bias], mask, gate)

    def forward_backward():
        out = fn(q, k, v, [bias], mask, gate)
        return torch.autograd.grad(out, leaves, torch.ones_like(out))

    result = []
    for step in (forward, forward_backward):
        try:
            result.append(do_bench(step, warmup=25, rep=100, return_mode="median"))
        except torch.OutOfMemoryError:
            result.append(None)
        torch.cuda.empty_cache()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    try:
        forward_backward()
        torch.cuda.synchronize()
        result.append((torch.cuda.max_memory_allocated() - base) / 2**20)
    except torch.OutOfMemoryError:
        result.append(None)
    torch.cuda.empty_cache()
    return result


def _fmt(x, unit=""):
    return "OOM/fail" if x is None else f"{x:.3f}{unit}" if x < 10 else f"{x:.1f}{unit}"


def benchmark_attention(cases, names):
    rows_out = []
    for case, rows, n, heads, c in cases:
        inputs = _inputs(rows, n, heads, c)
        results = {}
        for name in names:
            try:
                results[name] = _measure(IMPLEMENTATIONS[name], inputs)
            except Exception as error:  # a peer that cannot run this case is reported, not fatal
                print(f"  {name} failed on {case} {rows}x{n}: {type(error).__name__}: {str(error)[:200]}")
                results[name] = [None, None, None]
        ours = results["fastfold"]
        peers = {k: r for k, r in results.items() if k != "fastfold"}
        best_fwd = min((r[0] for r in peers.values() if r[0] is not None), default=None)
        best_fb = min((r[1] for r in peers.values() if r[1] is not None), default=None)
        least_mem = min((r[2] for r in peers.values() if r[2] is not None), default=None)
        line = [f"{case} rows={rows} N={n} {heads}x{c}"]
        for name in names:
            f, fb, mem = results[name]
            line.append(f"{_fmt(f)} / {_fmt(fb)} / {_fmt(mem)}")
        ratio_f = best_fwd / ours[0] if best_fwd and ours[0] else None
        ratio_fb = best_fb / ours[1] if best_fb and ours[1] else None
        ratio_mem = least_mem / ours[2] if least_mem and ours[2] else None
        line += [_fmt(ratio_f, "x"), _fmt(ratio_fb, "x"), _fmt(ratio_mem, "x")]
        rows_out.append(line)
        print(" | ".join(line), flush=True)
        del inputs
        torch.cuda.empty_cache()
    header = ["case"] + [f"{n}: fwd ms / fwd+bwd ms / peak MiB" for n in names] + \
        ["fwd speed-up vs fastest peer", "fwd+bwd speed-up vs fastest peer",
         "peak memory: leanest peer / ours"]
    return header, rows_out


def benchmark_layer_norm():
    rows_out = []
    for n_rows, channels in ((768 * 768, 128), (384 * 384, 128), (512 * 384, 256), (5120 * 384, 64)):
        x = torch.randn(n_rows, channels, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(channels, device="cuda")
        b = torch.randn(channels, device="cuda")
        moved = 2 * x.numel() * x.element_size()
        t_ours = do_bench(lambda: ops.layer_norm(x, w, b), return_mode="median")  # noqa: B023
        t_torch = do_bench(lambda: F.layer_norm(x, (channels,), w.bfloat16(), b.bfloat16()),  # noqa: B023
                           return_mode="median")
        t_copy = do_bench(lambda: x.clone(), return_mode="median")  # noqa: B023
        gbs = [moved / t / 1e6 for t in (t_ours, t_torch, t_copy)]
        xg = x.clone().requires_grad_()
        wg, bg = w.clone().requires_grad_(), b.clone().requires_grad_()
        t_ours_fb = do_bench(lambda: torch.autograd.grad(ops.layer_norm(xg, wg, bg).sum(), (xg, wg, bg)),  # noqa: B023
                             return_mode="median")
        line = [f"{n_rows}x{channels}", f"{t_ours:.3f}", f"{t_torch:.3f}", f"{t_copy:.3f}",
                f"{gbs[0]:.0f}", f"{gbs[1]:.0f}", f"{gbs[2]:.0f}", f"{100 * gbs[0] / gbs[2]:.0f}%",
                f"{t_ours_fb:.3f}"]
        rows_out.append(line)
        print(" | ".join(line), flush=True)
    header = ["rows x C (bf16)", "fastfold fwd ms", "F.layer_norm fwd ms (bf16)", "copy ms", "fastfold GB/s",
              "F.layer_norm GB/s", "copy GB/s", "fastfold / copy bandwidth", "fastfold fwd+bwd ms"]
    return header, rows_out


def _triangle_inputs(n, cz=128, c=128):
    def leaf(*shape, dtype=torch.float32):
        return (torch.randn(*shape, device="cuda") * shape[0] ** -0.5).to(dtype).requires_grad_()

    weights_in = TriangleProjectionWeights(*(leaf(*s) for s in [(cz,), (cz,)] + [(cz, c), (c,)] * 4 +
                                             [(cz, cz), (cz,)]))
    weights_out = TriangleOutputWeights(*(leaf(*s) for s in [(c,), (c,), (c, cz), (cz,)]))
    pair = leaf(n, n, cz, dtype=torch.bfloat16)
    mask = torch.rand(n, n, device="cuda") > 0.1
    return pair, mask, weights_in, weights_out


def _triangle_stages(projections, output):
    """Outgoing-edge update through the three stages: (pair, mask, weights_in, weights_out) -> update."""
    def fn(pair, mask, weights_in, weights_out):
        left, right, gate = projections(pair, mask, weights_in)
        return output(triangle_product(left, right, True), gate, weights_out)
    return fn


def _measure_triangle(fn, pair, mask, weights_in, weights_out):
    """(forward ms, forward+backward ms, peak MiB over inputs) of one implementation (outgoing edges)."""
    def forward():
        with torch.no_grad():
            return fn(pair, mask, weights_in, weights_out)

    def forward_backward():
        out = fn(pair, mask, weights_in, weights_out)
        return torch.autograd.grad(out, (pair, *weights_in, *weights_out), torch.ones_like(out))

    times = [do_bench(step, warmup=25, rep=100, return_mode="median") for step in (forward, forward_backward)]
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    forward_backward()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    torch.cuda.empty_cache()
    return (*times, peak)


def benchmark_triangle():
    rows_out = []
    for n in (256, 384, 768):
        inputs = _triangle_inputs(n)
        fused = _triangle_stages(ops.triangle_projections, ops.triangle_output)
        f, fb, mem = _measure_triangle(fused, *inputs)
        tf, tfb, tmem = _measure_triangle(_triangle_stages(triangle_projections_torch, triangle_output_torch),
                                          *inputs)
        line = [f"N={n} C_z=128 c=128", f"{_fmt(f)} / {_fmt(fb)} / {_fmt(mem)}",
                f"{_fmt(tf)} / {_fmt(tfb)} / {_fmt(tmem)}", _fmt(tf / f, "x"), _fmt(tfb / fb, "x"),
                _fmt(tmem / mem, "x")]
        rows_out.append(line)
        print(" | ".join(line), flush=True)
    header = ["case (outgoing, bf16)", "fastfold: fwd ms / fwd+bwd ms / peak MiB",
              "twin: fwd ms / fwd+bwd ms / peak MiB", "fwd speed-up", "fwd+bwd speed-up",
              "peak memory: twin / ours"]
    return header, rows_out


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two attention cases only")
    parser.add_argument("--no-flex", action="store_true", help="leave FlexAttention out (slow to compile)")
    parser.add_argument("--only", choices=["attention", "triangle", "layer_norm"], help="one table only")
    parser.add_argument("--markdown", help="write the tables to this markdown file")
    args = parser.parse_args()
    names = [n for n in IMPLEMENTATIONS if not (args.no_flex and n == "flex")]
    cases = CASES[1:2] + CASES[7:8] if args.quick else CASES
    props = torch.cuda.get_device_properties(0)
    env = (f"{props.name}, torch {torch.__version__}, Triton {triton.__version__}, "
           f"Python {platform.python_version()}, {datetime.date.today().isoformat()}")
    print(env, flush=True)
    benchmarks = {"attention": ("Attention (bf16)", lambda: benchmark_attention(cases, names)),
                  "triangle": ("Triangle multiplicative update", benchmark_triangle),
                  "layer_norm": ("LayerNorm", benchmark_layer_norm)}
    tables = "\n".join(f"### {title}\n\n{_table(*run())}\n" for key, (title, run) in benchmarks.items()
                       if args.only in (None, key))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{env}\n\n{tables}")
    print("\n" + tables)


if __name__ == "__main__":
    main()
