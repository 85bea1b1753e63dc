"""DAP on the model: the Evoformer, extra-MSA and template pair stacks and the whole AlphaFold model on
2 and 4 spawned gloo processes equal the single-process run.

Each process also runs the single-process model (a copy with the identity layout) on the inputs of
every DP replica, so each check compares against the reference computed in the same process. Sizes
are not multiples of the DAP size (N_seq 5, N_res 7, N_extra 6): the stacks pad and mask. Forward
checks run in eval mode with chunks of 2 rows (chunking on the DAP slices). The gradient of every
parameter of the whole model (so of every stack) is checked in training mode (dropout off), averaged
with :func:`fastfold.distributed.average_gradients` as the training step does. Dropout is checked on
sizes that are multiples of the DAP size (masks drawn whole and sliced). The triangle update gathers its
8 channels of ``right`` in 1, 3 (groups of 3, 3, 2) and 4 groups. Float32 throughout.
"""

import os
import tempfile

import dap_reference as ref
import pytest
import torch
import torch.distributed as dist

from fastfold.distributed import ParallelMesh, average_gradients, parallelize, spawn

STACKS = ("evoformer", "extra_msa", "template")


def _close(actual, expected, what):
    """Equal within float32 rounding: relative L2 error at most 1e-5 (the order of summation differs)."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    error = (actual - expected).norm()
    assert error <= 1e-5 * expected.norm() + 1e-7, f"{what}: L2 error {error:.3g}, norm {expected.norm():.3g}"


def _gradients(model, loss_fn, replicas, mesh) -> dict:
    """Parameter gradients of the loss on this process's DP replica, averaged by the training-step rule."""
    model.zero_grad()
    loss_fn(model, replicas[mesh.dp_rank]).backward()
    average_gradients(model.parameters(), mesh)
    return {name: p.grad for name, p in model.named_parameters()}


def _reference_gradients(model, loss_fn, replicas) -> dict:
    """Single-process gradients averaged over the DP replicas' inputs."""
    total = {}
    for inputs in replicas:
        model.zero_grad()
        loss_fn(model, inputs).backward()
        for name, p in model.named_parameters():
            total[name] = total.get(name, 0) + p.grad / len(replicas)
    return total


def _check_gradients(model, loss_fn, replicas, mesh, what, gather_groups: int) -> None:
    """Every parameter gradient within float32 rounding of the reference: a relative L2 error of 1e-4, or
    1e-6 of the largest gradient norm for gradients that are zero in exact arithmetic (the LayerNorm
    offsets before a softmax bias, whose gradient is rounding noise)."""
    reference = _reference_gradients(ref.clone(model), loss_fn, replicas)
    actual = _gradients(parallelize(model, mesh, gather_groups=gather_groups), loss_fn, replicas, mesh)
    scale = max(grad.norm() for grad in reference.values())
    for name, grad in reference.items():
        assert grad.abs().sum() > 0, f"{what}: {name} has a zero reference gradient"
        error = (actual[name] - grad).norm()
        assert error <= 1e-4 * grad.norm() + 1e-6 * scale, (
            f"{what} DP {mesh.data_parallel_size} x DAP {mesh.dap_size} grad {name}: L2 error {error:.3g}, "
            f"norm {grad.norm():.3g}")


def _check_stacks(mesh: ParallelMesh, gather_groups: int) -> None:
    """Each stack's eval outputs (chunked); their parameter gradients are checked in the whole model."""
    for name in STACKS:
        model = ref.build_stack(name).eval()
        inputs = ref.stack_inputs(name, seed=10 + mesh.dp_rank)
        with torch.no_grad():
            expected = ref.stack_output(model, inputs)
            dap = parallelize(ref.clone(model), mesh, gather_groups=gather_groups)
            actual = ref.stack_output(dap, inputs)
        for k, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _close(a, e, f"{name} stack output {k} at DAP {mesh.dap_size}")


def _check_dropout(mesh: ParallelMesh) -> None:
    """Training with dropout on, sizes multiples of n: same random state everywhere = same masks."""
    model = ref.build_stack("evoformer", training=True).train()
    inputs = ref.stack_inputs("evoformer", seed=3, num_seq=4, num_res=8)
    torch.manual_seed(5)
    expected = ref.stack_output(model, inputs)
    torch.manual_seed(5)
    actual = ref.stack_output(parallelize(ref.clone(model), mesh), inputs)
    for k, (a, e) in enumerate(zip(actual, expected, strict=True)):
        _close(a, e, f"dropout output {k} at DAP {mesh.dap_size}")


def _alphafold_loss(model, features):
    return ref.weighted_loss(ref.differentiable_outputs(model(features, num_recycle=1)))


def _check_alphafold(mesh: ParallelMesh, replicas: list, gather_groups: int) -> None:
    """The whole model with one recycle: eval outputs, and gradients of every parameter."""
    model = ref.build_alphafold().eval()
    features = replicas[mesh.dp_rank]
    with torch.no_grad():
        expected = model(features, return_representations=True)
        actual = parallelize(ref.clone(model), mesh, gather_groups=gather_groups)(features,
                                                                                 return_representations=True)
    for k, (a, e) in enumerate(zip(ref.differentiable_outputs(_grad_free(actual)),
                                   ref.differentiable_outputs(_grad_free(expected)), strict=True)):
        _close(a, e, f"AlphaFold output {k} at DAP {mesh.dap_size}")
    _check_gradients(model.train(), _alphafold_loss, replicas[:mesh.data_parallel_size], mesh, "AlphaFold",
                     gather_groups)


def _grad_free(outputs):
    """Mark the float tensors of a no-grad output dict as differentiable, to list them in order."""
    if isinstance(outputs, dict):
        return {key: _grad_free(value) for key, value in outputs.items()}
    if isinstance(outputs, torch.Tensor) and outputs.is_floating_point():
        return outputs.detach().requires_grad_()
    return outputs


def _check_checkpoint(mesh: ParallelMesh, replicas: list, path: str) -> None:
    """A state dict saved at DAP 2 loads into a model at DAP 4 and at DAP 1 (same outputs)."""
    original = ref.build_alphafold(seed=0).eval()
    saved_at = parallelize(ref.clone(original), ParallelMesh.from_process_group(2))
    if mesh.rank == 0:
        torch.save(saved_at.state_dict(), path)
    dist.barrier()
    with torch.no_grad():
        expected = original(replicas[0], num_recycle=0)["distogram"]["logits"]
        for dap_size in (4, 1):
            loaded = ref.build_alphafold(seed=1).eval()
            loaded.load_state_dict(torch.load(path), strict=True)
            parallelize(loaded, ParallelMesh.from_process_group(dap_size))
            actual = loaded(replicas[0], num_recycle=0)["distogram"]["logits"]
            _close(actual, expected, f"checkpoint saved at DAP 2, loaded at DAP {dap_size}")


def _worker(mesh: ParallelMesh, runs: tuple, replicas: list, checkpoint_path: str) -> None:
    """``runs``: (DAP size, channel groups of the triangle update's gather) pairs."""
    torch.set_num_threads(1)  # up to 4 processes share CI's 2 cores
    for dap_size, gather_groups in runs:
        mesh = mesh if mesh.dap_size == dap_size else ParallelMesh.from_process_group(dap_size)
        _check_stacks(mesh, gather_groups)
        _check_alphafold(mesh, replicas, gather_groups)
        if mesh.dap_size > 1:
            _check_dropout(mesh)
    if checkpoint_path:
        _check_checkpoint(mesh, replicas, checkpoint_path)


@pytest.fixture(scope="module")
def replicas() -> list:
    """Model features of two DP replicas (no recycle dimension); every attention row has a real key."""
    from alphafold_reference import random_features

    result = []
    for seed in (3, 4):
        arrays = random_features(ref.NUM_RES, ref.NUM_SEQ, ref.NUM_EXTRA, 2, seed=seed)  # 2 templates
        features = {k: torch.from_numpy(v) for k, v in arrays.items()}
        for name in ("msa_mask", "extra_msa_mask"):
            features[name][0] = features[name][:, 0] = 1.0
        result.append(features)
    return result


def test_two_processes_dap_2_and_dp_2(replicas):
    spawn(_worker, 2, 2, ((2, 3), (1, 4)), replicas, "")  # 8 channels in groups of 3, 3, 2


def test_four_processes_dap_4_dp_2_x_dap_2_and_checkpoints(replicas):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "state.pt")
        spawn(_worker, 4, 4, ((4, 1), (2, 4)), replicas, path)  # one gather; 4 groups of 2 channels
        loaded = ref.build_alphafold(seed=1).eval()
        loaded.load_state_dict(torch.load(path), strict=True)  # DAP 1: a plain single-process model
    with torch.no_grad():
        expected = ref.build_alphafold(seed=0).eval()(replicas[0], num_recycle=0)
        actual = loaded(replicas[0], num_recycle=0)
    _close(actual["distogram"]["logits"], expected["distogram"]["logits"], "checkpoint at DAP 1")


def test_parallelize_checks_the_mesh_first():
    model = ref.build_stack("template")
    mesh = ParallelMesh(rank=0, world_size=2, dap_size=2, data_parallel_size=1, dap_group=object())
    with pytest.raises(ValueError, match="world size 2 .* does not match the 1 running processes"):
        parallelize(model, mesh)
    assert type(model.layout).__name__ == "AxialLayout"  # nothing changed


def test_dap_size_1_is_the_model_unchanged():
    model = ref.build_stack("evoformer").eval()
    inputs = ref.stack_inputs("evoformer", seed=1)
    with torch.no_grad():
        expected = ref.stack_output(model, inputs)
        actual = ref.stack_output(parallelize(ref.clone(model), ParallelMesh.single()), inputs)
    for a, e in zip(actual, expected, strict=True):
        assert torch.equal(a, e)
