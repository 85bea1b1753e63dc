"""Time and peak memory of the fused kernels against PyTorch and external peers on AlphaFold's shapes (GPU).

Attention (bf16): MSA row attention with pair bias (8 heads x 32), MSA column attention (8 x 32, no
bias), triangle attention (4 x 32) and extra-MSA row attention (8 x 8), each with a key mask and a sigmoid
gate, at the shapes of ``CASES``. Peers: the naive PyTorch
twin, ``scaled_dot_product_attention`` with the pair bias and mask offset summed into one additive
float mask, FlexAttention with the bias and mask in its ``score_mod``, DeepSpeed's
``DS4Sci_EvoformerAttention``, cuEquivariance's ``triangle_attention`` and trifast (triangle attention
only); ``scripts/kernel_peers.py`` says how each is called. Forward is timed without autograd;
forward+backward computes gradients of q, k, v, the pair bias and the gate. Peak memory is the
allocator's peak during one forward+backward above what the inputs already hold. LayerNorm (bf16, 128 and
256 channels) is compared with ``torch.nn.functional.layer_norm`` and a device copy. The triangle
multiplicative update (bf16 pair, float32 parameters as in the model, C_z = c = 128), its three stages as
the model's module runs them, is compared with the same stages' PyTorch twins and cuEquivariance's
``triangle_multiplicative_update``, forward and forward+backward (gradients of the pair and every weight).

Once per case, every implementation's output and gradients are compared with the PyTorch twin's (both
bf16; the attention twin run over chunks of rows, so that it fits at every shape): one off by more
than ``TOLERANCE`` is marked MISMATCH in its cell, left out of the speed-ups, and makes the script exit
with status 1 after printing the tables. A peer that cannot run a case says why in its cell ("n/a: ...",
"not installed (...)", "OOM"). External peers come from ``scripts/install_peers.sh``.

Usage: ``python scripts/benchmark_kernels.py [--quick] [--cases I ...] [--only attention|triangle|layer_norm]
[--skip NAME ...] [--markdown PATH]``.
"""

import argparse
import datetime
import functools
import platform
import sys

import kernel_peers as peers  # beside this script
import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from fastfold.kernels import ops, triton_attention, triton_attention_bwd
from fastfold.kernels.attention import attention_torch
from fastfold.kernels.softmax import mask_to_bias
from fastfold.kernels.triangle_multiplication import (
    TriangleOutputWeights,
    TriangleProjectionWeights,
    triangle_output_torch,
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
    """FlexAttention with ``score + mask offset (+ pair bias)`` in its score_mod (rows as its batch)."""
    global _flex_compiled
    from torch.nn.attention.flex_attention import flex_attention

    if _flex_compiled is None:
        # one compiled kernel per shape and grad mode: above dynamo's default limit of 8 it would fall
        # back silently to the unfused implementation
        torch._dynamo.config.recompile_limit = 64
        _flex_compiled = torch.compile(flex_attention, dynamic=False)
    rows = q.shape[1]
    key_offset = mask_to_bias(mask[0, :, 0, 0]).to(q.dtype)  # [rows, K]
    if biases:
        (bias,) = biases
        bias = bias[0, 0]  # [H, Q, K], shared by all rows

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + key_offset[b, kv_idx] + bias[h, q_idx, kv_idx]
    else:
        def score_mod(score, b, h, q_idx, kv_idx):
            return score + key_offset[b, kv_idx]

    flat = [t.reshape(rows, *t.shape[-3:]) for t in (q, k, v)]
    out = _flex_compiled(*flat, score_mod=score_mod).reshape(q.shape)
    return out * torch.sigmoid(gate)


ATTENTION = {"fastfold": peers.same_layout(ops.attention), "naive": peers.same_layout(attention_torch),
             "sdpa": peers.same_layout(attention_sdpa), "flex": peers.same_layout(attention_flex),
             "ds4sci": peers.ds4sci, "cueq": peers.cueq_attention, "trifast": peers.trifast}
TRIANGLE = {"fastfold": peers.triangle_stages(ops.triangle_projections, ops.triangle_output),
            "twin": peers.triangle_stages(triangle_projections_torch, triangle_output_torch),
            "cueq": peers.cueq_trimul}
# Largest relative error (Frobenius norm) of an output or gradient against the PyTorch twin's, both in bf16;
# a mis-wired peer (a transposed layout, the mask's sense, a wrong scale) errs by O(1)
TOLERANCE = 3e-2
MISMATCHES = []

# (case, rows, N, heads, c): independent attention problems ("rows") over N queries and keys each. MSA row
# attention (rows = N_seq, N = N_res) and triangle attention (rows = N = N_res) with the pair bias; MSA
# column attention (rows = N_res, N = N_seq), no pair bias; extra-MSA row attention (rows = N_extra_seq).
# The triangle attention around the ending node is the same call on the transposed pair's projections.
CASES = [("msa_row", 128, 256, 8, 32), ("msa_row", 128, 384, 8, 32), ("msa_row", 128, 768, 8, 32),
         ("msa_row", 512, 256, 8, 32), ("msa_row", 512, 384, 8, 32), ("msa_row", 512, 768, 8, 32),
         ("triangle", 256, 256, 4, 32), ("triangle", 384, 384, 4, 32), ("triangle", 768, 768, 4, 32),
         ("extra_msa", 1024, 384, 8, 8),
         ("msa_row", 1024, 256, 8, 32), ("msa_row", 1024, 384, 8, 32), ("msa_row", 1024, 768, 8, 32),
         ("msa_row", 128, 1536, 8, 32), ("msa_row", 512, 1536, 8, 32), ("msa_row", 1024, 1536, 8, 32),
         ("msa_col", 256, 128, 8, 32), ("msa_col", 384, 512, 8, 32), ("msa_col", 768, 512, 8, 32),
         ("msa_col", 1536, 1024, 8, 32),
         ("triangle", 1024, 1024, 4, 32), ("triangle", 1536, 1536, 4, 32), ("triangle", 2048, 2048, 4, 32),
         ("extra_msa", 5120, 384, 8, 8), ("extra_msa", 5120, 768, 8, 8)]
QUICK = (1, 7)  # --quick: MSA 128 x 384 and triangle 384
# logits per chunk of rows of the reference (the PyTorch twin): its float32 softmax and gradients fit
REFERENCE_LOGITS = 2 ** 27

NOTES = {  # printed under each table
    "attention": "Peers take their inputs in their own layouts, converted once outside the timing, and "
                 "none has the sigmoid gate: each multiplies by `sigmoid(gate)` outside, in PyTorch. "
                 "ds4sci: DeepSpeed's `DS4Sci_EvoformerAttention` (`[B, rows, N, H, c]`, the mask as a "
                 "`[B, rows, 1, 1, N]` bf16 bias of -1e9); cueq: `cuequivariance_torch.triangle_attention` "
                 "(our layout, the pair bias given in float32 as its Hopper kernel reads it); trifast: "
                 "`trifast.triangle_attention` (`[B, H, N, N, c]`, triangle attention only). Every output "
                 f"and gradient was checked against the PyTorch twin's (relative error <= {TOLERANCE}).",
    "triangle": "cueq: `cuequivariance_torch.triangle_multiplicative_update` (the whole update: both "
                "LayerNorms, the gates and the mask, as the model's module), its weights packed once into "
                "its `[out, in]` layout, run under bf16 autocast with the float32 parameters. Every output "
                f"and gradient was checked against the twin's (relative error <= {TOLERANCE}).",
}


def _inputs(case, rows, n, heads, c, dtype=torch.bfloat16):
    """q, k, v, the pair bias (None for MSA column attention), the key mask and the gate of one case."""
    def leaf(*shape):
        return torch.randn(*shape, device="cuda", dtype=dtype, requires_grad=True)

    q, k, v, gate = (leaf(1, rows, heads, n, c) for _ in range(4))
    pair_bias = None if case == "msa_col" else leaf(1, 1, heads, n, n)
    mask = torch.rand(1, rows, 1, 1, n, device="cuda") > 0.1
    return q, k, v, pair_bias, mask, gate


def attention_reference(q, k, v, bias, mask, gate):
    """(expected, seed): the PyTorch twin's output and gradients of ``sum(output * seed)`` (q, k, v, the
    bias if any, the gate: the ``same_layout`` leaves' order) for a random float32 ``seed``, computed over
    chunks of rows of at most ``REFERENCE_LOGITS`` logits, so that the largest cases fit; gradients are
    accumulated in float32 and returned in their operands' dtypes."""
    rows, heads, n_q, n_k = q.shape[1], q.shape[2], q.shape[-2], k.shape[-2]
    step = max(1, REFERENCE_LOGITS // (heads * n_q * n_k))
    seed = torch.randn(*q.shape[:-1], v.shape[-1], device=q.device)
    shared = [] if bias is None else [bias.detach().requires_grad_()]
    out = torch.empty(seed.shape, device=q.device, dtype=v.dtype)
    per_row = [torch.zeros(t.shape, device=q.device) for t in (q, k, v, gate)]
    shared_grad = [torch.zeros(t.shape, device=q.device) for t in shared]
    for start in range(0, rows, step):
        part = slice(start, start + step)
        leaves = [t[:, part].detach().requires_grad_() for t in (q, k, v, gate)]
        chunk = attention_torch(*leaves[:3], shared, mask[:, part], leaves[3])
        grads = torch.autograd.grad((chunk.float() * seed[:, part]).sum(), [*leaves, *shared])
        out[:, part] = chunk.detach()
        for total, grad in zip(per_row, grads[:4], strict=True):
            total[:, part] = grad
        for total, grad in zip(shared_grad, grads[4:], strict=True):
            total += grad
    dq, dk, dv, dgate = (g.to(t.dtype) for g, t in zip(per_row, (q, k, v, gate), strict=True))
    return [out, dq, dk, dv, *(g.to(bias.dtype) for g in shared_grad), dgate], seed


def _whole_reference(prepare, inputs):
    """(expected, seed) as :func:`attention_reference`, from one implementation run whole."""
    prepared = prepare(*inputs)
    out = prepared.output_as_ours(prepared.call())
    seed = torch.randn(out.shape, device=out.device)
    return _outputs(prepared, seed), seed


def _measure(prepared):
    """(forward ms, forward+backward ms, peak MiB over inputs) of one implementation; None: out of memory."""
    def forward():
        with torch.no_grad():
            return prepared.call()

    def forward_backward():
        out = prepared.call()
        return torch.autograd.grad(out, prepared.leaves, torch.ones_like(out))

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


def _outputs(prepared, seed):
    """Output and gradients (of ``sum(output * seed)``) of one implementation, in the reference's layout."""
    out = prepared.output_as_ours(prepared.call())
    grads = torch.autograd.grad((out.float() * seed).sum(), prepared.leaves)
    return [out.detach(), *prepared.grads_as_ours(grads)]


def _check(name, label, prepared, reference, seed):
    """Compare with the reference's output and gradients; True if within TOLERANCE (logged either way)."""
    errors = []
    for x, r in zip(_outputs(prepared, seed), reference, strict=True):
        diff = x.float() - r.float()
        errors.append(((diff.norm() / r.float().norm().clamp_min(1e-30)).item(), diff.abs().max().item()))
    rel, worst = max(e[0] for e in errors), max(e[1] for e in errors)
    ok = rel <= TOLERANCE  # NaN fails too
    print(f"  check {name} on {label}: max |err| {worst:.3g}, max relative error {rel:.3g} over the output "
          f"and {len(errors) - 1} gradients: {'ok' if ok else 'MISMATCH'}", flush=True)
    if not ok:
        MISMATCHES.append(f"{name} on {label} (relative error {rel:.3g})")
    return ok


def _run_case(impls, reference, label, inputs, unavailable):
    """{name: (fwd ms, fwd+bwd ms, peak MiB) or None, reason or None, passed its check} for one case.
    ``reference``: a function of the inputs (:func:`attention_reference`), or the name of the implementation
    that serves as the reference (run whole, and not checked against itself)."""
    if isinstance(reference, str):
        expected, seed = _whole_reference(impls[reference], inputs)
    else:
        expected, seed = reference(*inputs)
    results = {}
    for name, prepare in impls.items():
        times, reason, ok = None, unavailable.get(name), True
        if reason is None:
            try:
                prepared = prepare(*inputs)
                ok = name == reference or _check(name, label, prepared, expected, seed)
                times = _measure(prepared)
                del prepared
            except peers.Unsupported as error:
                reason = f"n/a: {error}"
            except peers.Unavailable as error:  # for this case and the rest
                cause = error.__cause__
                print(f"  {name}: {error}: {type(cause).__name__}: {str(cause)[:300]}", flush=True)
                reason = unavailable[name] = str(error)
            except torch.OutOfMemoryError:
                reason = "OOM"
            except Exception as error:  # a peer that cannot run this case is reported, not fatal
                print(f"  {name} failed on {label}: {type(error).__name__}: {str(error)[:300]}", flush=True)
                reason = f"failed: {type(error).__name__}"
            torch.cuda.empty_cache()
        results[name] = (times, reason, ok)
    return results


def _fmt(x, unit=""):
    return "OOM/fail" if x is None else f"{x:.3f}{unit}" if x < 10 else f"{x:.1f}{unit}"


def _benchmark(impls, reference, cases, first_column):
    """One table: a row per case, a column per implementation, then ours against the best other one;
    ``reference`` as in :func:`_run_case`."""
    unavailable, rows_out = {}, []
    for label, make_inputs in cases:
        inputs = make_inputs()
        results = _run_case(impls, reference, label, inputs, unavailable)
        line = [label]
        for times, reason, ok in results.values():
            cell = reason if times is None else " / ".join(_fmt(t) for t in times)
            line.append(cell if ok else f"{cell} MISMATCH")
        ours = results["fastfold"][0] or [None] * 3
        peer_times = [t for name, (t, _, ok) in results.items() if name != "fastfold" and t and ok]
        for i in range(3):
            best = min((t[i] for t in peer_times if t[i] is not None), default=None)
            line.append(_fmt(best / ours[i] if best and ours[i] else None, "x"))
        rows_out.append(line)
        print(" | ".join(line), flush=True)
        del inputs
        torch.cuda.empty_cache()
    header = [first_column] + [f"{n}: fwd ms / fwd+bwd ms / peak MiB" for n in impls]
    header += ["fwd speed-up vs fastest peer", "fwd+bwd speed-up vs fastest peer",
               "peak memory: leanest peer / ours"]
    return header, rows_out


def benchmark_attention(cases, names):
    impls = {name: ATTENTION[name] for name in names}
    labelled = [(f"{case} rows={rows} N={n} {heads}x{c}", functools.partial(_inputs, case, rows, n, heads, c))
                for case, rows, n, heads, c in cases]
    return _benchmark(impls, attention_reference, labelled, "case")


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


def benchmark_triangle(names):
    impls = {name: TRIANGLE[name] for name in names}
    cases = [(f"N={n} C_z=128 c=128", functools.partial(_triangle_inputs, n)) for n in (256, 384, 768)]
    return _benchmark(impls, "twin", cases, "case (outgoing, bf16)")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two attention cases only")
    parser.add_argument("--cases", nargs="+", type=int, metavar="I",
                        help=f"only these attention cases (indices into CASES, 0-{len(CASES) - 1}), e.g. to "
                             "finish a table in a second call")
    parser.add_argument("--no-flex", action="store_true", help="leave FlexAttention out (slow to compile)")
    parser.add_argument("--skip", nargs="+", default=[], choices=sorted(set(ATTENTION) | set(TRIANGLE)),
                        metavar="NAME", help="leave these implementations out: %(choices)s")
    parser.add_argument("--only", choices=["attention", "triangle", "layer_norm"], help="one table only")
    parser.add_argument("--markdown", help="write the tables to this markdown file")
    args = parser.parse_args()
    skip = set(args.skip) | ({"flex"} if args.no_flex else set())
    skip -= {"fastfold", "twin"}  # ours, and the reference of the triangle table's checks
    cases = [CASES[i] for i in QUICK] if args.quick else CASES
    if args.cases:
        cases = [CASES[i] for i in args.cases]
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    env = (f"{props.name}, torch {torch.__version__}, Triton {triton.__version__}, "
           f"Python {platform.python_version()}, {datetime.date.today().isoformat()}")
    print(env, flush=True)
    attention = [n for n in ATTENTION if n not in skip]
    triangle = [n for n in TRIANGLE if n not in skip]
    benchmarks = {"attention": ("Attention (bf16)", lambda: benchmark_attention(cases, attention)),
                  "triangle": ("Triangle multiplicative update", lambda: benchmark_triangle(triangle)),
                  "layer_norm": ("LayerNorm", benchmark_layer_norm)}
    done = {}
    for key in ("triangle", "layer_norm", "attention"):  # attention last: DS4Sci's op may still be compiling
        if args.only not in (None, key):
            continue
        done[key] = _table(*benchmarks[key][1]())
        tables = "\n".join(f"### {title}\n\n{done[k]}\n" + (f"\n{NOTES[k]}\n" if k in NOTES else "")
                           for k, (title, _) in benchmarks.items() if k in done)
        if args.markdown:  # after each table, so a timeout keeps the finished ones
            with open(args.markdown, "w") as f:
                f.write(f"{env}\n\n{tables}")
    print("\n" + tables)
    for tiled in (triton_attention._fwd_tiled, triton_attention_bwd._kv_tiled, triton_attention_bwd._q_tiled):
        for key, settings in tiled.chosen.items():
            print(f"tiles chosen: {tiled.kernel.fn.__name__} {key}: {settings}")
    if MISMATCHES:
        print("MISMATCH against the PyTorch twin: " + "; ".join(MISMATCHES), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
