"""DAP collectives, async pairs, layout hooks and the process mesh, on 2 and 4 spawned gloo processes.

Every distributed result is compared with the single-process computation on the whole tensors, which
each process also runs (all processes of a DAP group draw the same tensors from the same seed). The
gradient convention of ``fastfold.distributed.comm``: backpropagation differentiates the sum of the
per-process losses. So in the collective checks each process's loss is the reference loss L / n: the
gradient of a sharded input equals the reference gradient of its slice, the gradient of a replicated
input summed over the DAP group equals the reference gradient. In the axial-stack checks each process
computes the whole loss L, as training does, and parameter gradients averaged over all processes equal
the single-process gradients (averaged over the DP replicas, which see different data).
"""

import pytest
import torch
import torch.distributed as dist

from fastfold.distributed import (
    DapLayout,
    ParallelMesh,
    all_gather,
    all_to_all,
    exchange,
    init_from_env,
    pad_to_multiple,
    reduce_scatter,
    scatter,
    spawn,
    start_all_gather,
    start_all_to_all,
    start_exchange,
    unpad,
    wait,
)
from fastfold.distributed.async_comm import start_all_to_all_ranked
from fastfold.distributed.mesh import check_degrees
from fastfold.model.layout import AxialLayout

ROWS, COLUMNS = -3, -2


def _random(seed: int, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _close(actual, expected, what):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10, msg=lambda m: f"{what}: {m}")


def _sum_over_dap(t: torch.Tensor, mesh: ParallelMesh) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t, group=mesh.dap_group)
    return t


def _slice(t: torch.Tensor, dim: int, mesh: ParallelMesh) -> torch.Tensor:
    return t.chunk(mesh.dap_size, dim)[mesh.dap_rank]


def _check_collectives(mesh: ParallelMesh) -> None:
    """Forward and backward of scatter, all_gather, reduce_scatter, all_to_all and exchange, sync and
    async."""
    n, seed = mesh.dap_size, 100 * mesh.dp_rank
    whole = _random(seed, 2, 2 * n, 3 * n, 3)  # [B, A, B', C], divisible along A and B'
    weight = _random(seed + 1, *whole.shape)  # loss = sum(out * weight) / n on every process
    for dim in (ROWS, COLUMNS):
        # scatter -> all_gather: replicated input, gradient summed over the group
        x = whole.clone().requires_grad_()
        shard = scatter(x, dim, mesh)
        _close(shard, _slice(whole, dim, mesh), f"scatter dim {dim}")
        out = all_gather(shard, dim, mesh)
        _close(out, whole, f"all_gather dim {dim}")
        (out * weight).sum().div(n).backward()
        _close(_sum_over_dap(x.grad, mesh), weight, f"scatter/all_gather backward dim {dim}")

        # all_gather of a sharded input, sync and async with independent work in between
        for name in ("sync", "async"):
            x = _slice(whole, dim, mesh).clone().requires_grad_()
            if name == "sync":
                out = all_gather(x, dim, mesh)
                other = (3 * x).sin()
            else:
                pending = start_all_gather(x, dim, mesh)
                other = (3 * x).sin()  # overlaps the gather (and, in backward, the reduce-scatter)
                out = wait(pending)
            _close(out, whole, f"{name} all_gather dim {dim}")
            ((out * weight).sum() / n + other.sum()).backward()
            _close(x.grad, _slice(weight, dim, mesh) + 3 * (3 * x.detach()).cos(), f"{name} all_gather grad")

        # reduce_scatter of per-process tensors: the reference sums them
        parts = [_random(seed + 10 + r, *whole.shape) for r in range(n)]
        x = parts[mesh.dap_rank].clone().requires_grad_()
        out = reduce_scatter(x, dim, mesh)
        _close(out, _slice(sum(parts), dim, mesh), f"reduce_scatter dim {dim}")
        (all_gather(out, dim, mesh) * weight).sum().div(n).backward()
        _close(x.grad, weight, f"reduce_scatter backward dim {dim}")

    # all_to_all rows -> columns, sync and async; round trip is the identity
    for name in ("sync", "async"):
        x = _slice(whole, ROWS, mesh).clone().requires_grad_()
        if name == "sync":
            columns = all_to_all(x, COLUMNS, ROWS, mesh)
        else:
            columns = wait(start_all_to_all(x, COLUMNS, ROWS, mesh))
        _close(columns, _slice(whole, COLUMNS, mesh), f"{name} all_to_all rows -> columns")
        _close(all_to_all(columns, ROWS, COLUMNS, mesh), x, f"{name} all_to_all round trip")
        (all_gather(columns, COLUMNS, mesh) * weight).sum().div(n).backward()
        _close(x.grad, _slice(weight, ROWS, mesh), f"{name} all_to_all backward")

    # exchange: piece (r, s) from rank r to rank s; every process's loss weighs what it receives
    ranks = [r for r in range(n) if r != mesh.dap_rank]

    def piece(sender, receiver, offset):
        return _random(seed + offset + sender * n + receiver, 2, 3)

    for name in ("sync", "async"):
        x = torch.stack([piece(mesh.dap_rank, r, 50) for r in ranks]).requires_grad_()
        received = exchange(x, mesh) if name == "sync" else wait(start_exchange(x, mesh))
        _close(received, torch.stack([piece(r, mesh.dap_rank, 50) for r in ranks]), f"{name} exchange")
        (received * torch.stack([piece(r, mesh.dap_rank, 80) for r in ranks])).sum().backward()
        _close(x.grad, torch.stack([piece(mesh.dap_rank, r, 80) for r in ranks]), f"{name} exchange backward")

    # ranked all-to-all: slice r of a middle dimension (strided in memory) to rank r; its own adjoint
    def ranked(sender_is_me: bool, offset: int) -> torch.Tensor:  # [2, n, 3]
        me = mesh.dap_rank
        pieces = [piece(me, r, offset) if sender_is_me else piece(r, me, offset) for r in range(n)]
        return torch.stack(pieces, 1)

    x = ranked(True, 200).requires_grad_()
    received = wait(start_all_to_all_ranked(x, 1, mesh))
    _close(received, ranked(False, 200), "ranked all_to_all")
    (received * ranked(False, 300)).sum().backward()
    _close(x.grad, ranked(True, 300), "ranked all_to_all backward")

    # uneven sizes: pad, shard, gather, cut
    uneven = _random(seed + 2, 2, 2 * n + 1, 3)
    x = uneven.clone().requires_grad_()
    padded = pad_to_multiple(x, -2, n)
    assert padded.shape[-2] == 3 * n
    out = unpad(all_gather(scatter(padded, -2, mesh), -2, mesh), -2, uneven.shape[-2])
    _close(out, uneven, "padded round trip")
    (out * uneven).sum().div(n).backward()
    _close(_sum_over_dap(x.grad, mesh), uneven, "padded round trip backward")


def _check_async_overlap_order(mesh: ParallelMesh) -> None:
    """Backward order: wait's backward launches, the work in between runs, then start's backward waits."""
    events = []
    x = _random(0, 2 * mesh.dap_size, 3).requires_grad_()
    pending = start_all_gather(x, 0, mesh)
    pending.token.grad_fn.register_prehook(lambda *_: events.append("start backward (wait)"))
    between = x.exp()
    between.register_hook(lambda grad: events.append("work in between"))
    out = wait(pending)
    out.grad_fn.register_hook(lambda *_: events.append("wait backward (launch)"))
    (out.sum() + between.sum()).backward()
    assert events == ["wait backward (launch)", "work in between", "start backward (wait)"], events


def _axial_block(layout, params: dict, msa, pair, msa_mask, pair_mask) -> tuple:
    """A miniature Evoformer block (not AlphaFold's maths) that calls every hook where the Evoformer does.

    msa [N_seq, N_res, C], pair [N_res, N_res, C], masks [N_seq, N_res], [N_res, N_res] -> (msa, pair).
    """
    num_seq, num_res = msa.shape[-3], msa.shape[-2]
    msa, msa_mask = layout.enter(msa, msa_mask)  # [N_seq / n, N_res, C], mask whole
    pair, pair_mask = layout.enter(pair, pair_mask)  # [N_res / n, N_res, C]
    # row attention with pair bias: the bias of the local pair rows is gathered while q, k, v are projected
    pending = layout.start_gather(torch.einsum("qkc,ch->hqk", pair, params["bias"]), -2)
    q, k, v = msa @ params["q"], msa @ params["k"], msa @ params["v"]
    bias = layout.wait(pending).sum(0)  # [N_res, N_res]
    keys = layout.shard(msa_mask, -2)[:, None, :]  # [N_seq / n, 1, N_res]
    logits = q @ k.transpose(-1, -2) + bias + (keys - 1) * 1e9
    msa = msa + torch.softmax(logits, -1) @ v
    # column update (masked mean over sequences) on column slices
    msa = layout.rows_to_columns(msa)  # [N_seq, N_res / n, C]
    column_mask = layout.shard(msa_mask, -1)[..., None]  # [N_seq, N_res / n, 1]
    mean = (column_mask * msa).sum(0) / (column_mask.sum(0) + 1e-6)
    msa = msa + torch.tanh(mean @ params["column"])
    # outer product mean: the right projection is gathered over residues while the left one is computed
    pending = layout.start_gather(column_mask * (msa @ params["right"]), -2)  # -> [N_seq, N_res, C]
    left = column_mask * (msa @ params["left"])
    norm = torch.einsum("si,sj->ij", column_mask[..., 0], msa_mask)[..., None]  # [N_res / n, N_res, 1]
    pair = pair + torch.einsum("sic,sjc->ijc", left, layout.wait(pending)) / (1e-3 + norm)
    msa_pending = layout.start_columns_to_rows(msa)  # overlaps the pair updates
    # triangle multiplication, outgoing edges on row slices: the right projection is gathered over rows
    row_mask = layout.shard(pair_mask, -2)[..., None]  # [N_res / n, N_res, 1]
    pending = layout.start_gather(row_mask * (pair @ params["out_right"]), -3)
    left = row_mask * (pair @ params["out_left"])
    pair = pair + torch.einsum("ikc,jkc->ijc", left, layout.wait(pending))
    # triangle multiplication, incoming edges on column slices: the right projection gathered over columns
    pair = layout.rows_to_columns(pair)  # [N_res, N_res / n, C]
    column_mask = layout.shard(pair_mask, -1)[..., None]
    right = layout.gather(column_mask * (pair @ params["in_right"]), -2)  # [N_res, N_res, C]
    pair = pair + torch.einsum("kjc,kic->ijc", column_mask * (pair @ params["in_left"]), right)
    # softmax within rows, then within columns, on the pieces as they arrive (a size-1 argument broadcasts)
    row_mask, scale = layout.shard(pair_mask, -2)[..., None], params["scale"][:1, None]  # [1, 1, C]
    pair = layout.residual_columns_to_rows(_masked_softmax_fn(-2), pair, [row_mask, scale], [-3, -3])
    pair = layout.residual_rows_to_columns(_masked_softmax_fn(-3), pair, [column_mask, scale], [-2, -2])
    # a pointwise update moved back to rows (without autograd its pieces are never joined), with an argument
    # that varies along both axes
    weight = row_mask * params["scale"][1]  # [N_res / n, N_res, C]
    pair = layout.residual_columns_to_rows(lambda x, w: torch.tanh(x) * w, pair, [weight], [-3],
                                           pointwise=True)
    msa = layout.wait(msa_pending)
    return layout.leave(msa, num_seq, num_res), layout.leave(pair, num_res, num_res)


def _masked_softmax_fn(dim: int):
    """``(x, mask, scale) -> scale * mask * softmax(x) * x``, softmax over the unmasked entries along ``dim``
    (-2: within rows, -3: within columns); zero on masked entries, so on fully masked rows (padding)."""
    return lambda x, mask, scale: scale * mask * torch.softmax(x + (mask - 1) * 1e9, dim) * x


def _block_inputs(seed: int) -> tuple:
    num_seq, num_res, channels = 5, 7, 4  # not multiples of 2 or 4: exercises the padding
    msa_mask = (torch.rand(num_seq, num_res, generator=torch.Generator().manual_seed(seed)) > 0.2).double()
    msa_mask[0] = 1.0
    pair_mask = torch.ones(num_res, num_res, dtype=torch.float64)
    pair_mask[-1] = pair_mask[:, -1] = 0.0
    return (_random(seed + 1, num_seq, num_res, channels), _random(seed + 2, num_res, num_res, channels),
            msa_mask, pair_mask)


def _block_params() -> dict:
    """Weights ``[C, C]`` (``[C, H]`` for the pair bias) of :func:`_axial_block`, C = 4, H = 2."""
    names = ("bias", "q", "k", "v", "column", "left", "right", "out_left", "out_right", "in_left", "in_right",
             "scale")
    return {name: 0.3 * _random(20 + i, 4, 2 if name == "bias" else 4) for i, name in enumerate(names)}


def _block_gradients(layout, params: dict, inputs: tuple) -> tuple:
    """Outputs and gradients (parameters, then msa and pair) of sum(out * weights)."""
    params = {name: p.clone().requires_grad_() for name, p in params.items()}
    msa, pair = (t.clone().requires_grad_() for t in inputs[:2])
    out_msa, out_pair = _axial_block(layout, params, msa, pair, *inputs[2:])
    loss = (out_msa * _random(7, *out_msa.shape)).sum() + (out_pair * _random(8, *out_pair.shape)).sum()
    loss.backward()
    return (out_msa.detach(), out_pair.detach()), [p.grad for p in params.values()] + [msa.grad, pair.grad]


def _check_axial_block(mesh: ParallelMesh) -> None:
    """DapLayout block = AxialLayout block; gradients averaged over all processes = mean over DP replicas."""
    params = _block_params()
    reference = [_block_gradients(AxialLayout(), params, _block_inputs(50 * replica))
                 for replica in range(mesh.data_parallel_size)]
    outputs, grads = _block_gradients(DapLayout(mesh), params, _block_inputs(50 * mesh.dp_rank))
    for name, actual, expected in zip(("msa", "pair"), outputs, reference[mesh.dp_rank][0], strict=True):
        _close(actual, expected, f"axial block {name}")
    with torch.no_grad():  # the residual moves write each piece's sum in place
        outputs = _axial_block(DapLayout(mesh), params, *_block_inputs(50 * mesh.dp_rank))
    for name, actual, expected in zip(("msa", "pair"), outputs, reference[mesh.dp_rank][0], strict=True):
        _close(actual, expected, f"axial block {name} without gradient")
    for i, grad in enumerate(grads):
        dist.all_reduce(grad)  # over the world: DP x DAP
        expected = sum(ref[1][i] for ref in reference) / mesh.data_parallel_size
        _close(grad / mesh.world_size, expected, f"axial block gradient {i}")


def _check_mesh(mesh: ParallelMesh) -> None:
    """Group membership: contiguous DAP groups, DP groups of equal DAP position; bad degrees rejected."""
    dap, first = mesh.dap_size, mesh.dp_rank * mesh.dap_size
    assert dist.get_process_group_ranks(mesh.dap_group) == list(range(first, first + dap))
    assert dist.get_process_group_ranks(mesh.dp_group) == list(range(mesh.dap_rank, mesh.world_size, dap))
    with pytest.raises(ValueError, match=f"DAP size 3 does not divide world size {mesh.world_size}"):
        ParallelMesh.from_process_group(3)


CHECKS = (_check_mesh, _check_collectives, _check_async_overlap_order, _check_axial_block)


def _worker(mesh: ParallelMesh, dap_sizes: tuple) -> None:
    """Every check on a mesh of each DAP size over the same processes (spawning dominates the run time)."""
    for dap_size in dap_sizes:
        mesh = mesh if mesh.dap_size == dap_size else ParallelMesh.from_process_group(dap_size)
        for check in CHECKS:
            check(mesh)


def test_two_processes_dap_2():
    spawn(_worker, 2, 2, (2,))


def test_four_processes_dap_4_and_dp_2_x_dap_2():
    spawn(_worker, 4, 4, (4, 2))


def test_mesh_validation():
    with pytest.raises(ValueError, match="DAP size 3 does not divide world size 4"):
        check_degrees(4, 3)
    with pytest.raises(ValueError, match="DAP size 3 does not divide world size 4"):
        spawn(_worker, 4, 3, (3,))  # fails before any process starts
    with pytest.raises(ValueError, match=r"data parallel size 1 x DAP size 2 != world size 4"):
        ParallelMesh(rank=0, world_size=4, dap_size=2, data_parallel_size=1)
    with pytest.raises(ValueError, match="DAP size 2 needs a process group"):
        ParallelMesh(rank=0, world_size=2, dap_size=2, data_parallel_size=1)
    with pytest.raises(ValueError, match="rank 4 outside world size 4"):
        ParallelMesh(rank=4, world_size=4, dap_size=1, data_parallel_size=4, dp_group=object())


def test_init_from_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert init_from_env(dap_size=1) == ParallelMesh.single()
    with pytest.raises(ValueError, match="DAP size 2 does not divide world size 1"):
        init_from_env(dap_size=2)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"):
        init_from_env(dap_size=1)


def test_single_process_mesh_is_identity():
    mesh, x = ParallelMesh.single(), _random(0, 3, 5, 2)
    assert (mesh.dap_rank, mesh.dp_rank) == (0, 0)
    identities = (scatter(x, 0, mesh), all_gather(x, 1, mesh), reduce_scatter(x, 0, mesh),
                  all_to_all(x, 1, 0, mesh), wait(start_all_gather(x, 0, mesh)),
                  wait(start_all_to_all(x, 1, 0, mesh)))
    for out in identities:
        assert out is x
    params = _block_params()
    expected = _block_gradients(AxialLayout(), params, _block_inputs(0))
    actual = _block_gradients(DapLayout(mesh), params, _block_inputs(0))
    for a, e in zip(actual[0] + tuple(actual[1]), expected[0] + tuple(expected[1]), strict=True):
        _close(a, e, "single-process DapLayout")


def test_dap_layout_has_every_hook():
    hooks = {name for name in vars(AxialLayout) if not name.startswith("_")}
    assert hooks <= {name for name in dir(DapLayout(ParallelMesh.single())) if not name.startswith("_")}
