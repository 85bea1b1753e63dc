"""Rigid-body maths against AlphaFold's own ``quat_affine`` and ``r3`` (JAX on CPU), plus properties."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from alphafold.model import quat_affine, r3

from fastfold.common.rigid import (
    Rigid,
    quat_multiply,
    quat_to_rot,
    quat_update,
    rigids_from_3_points,
    rot_compose,
    rot_identity,
    rot_to_quat,
    rot_x_from_sin_cos,
)

ATOL = 1e-5


def _random(shape, seed, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _random_rigid(batch_shape, seed, dtype=torch.float32):
    """Frames from random unnormalised quaternions and translations."""
    tensor_7 = torch.from_numpy(_random((*batch_shape, 7), seed, scale=2.0)).to(dtype)
    return Rigid.from_tensor_7(tensor_7, normalize=True)


def _close(actual, expected, atol=ATOL):
    if not isinstance(expected, torch.Tensor):
        expected = torch.from_numpy(np.array(expected))
    expected = expected.to(actual.dtype)
    assert actual.shape == expected.shape
    assert torch.max(torch.abs(actual - expected)).item() <= atol


def _unstack(points):
    """``[*, 3]`` numpy array as AlphaFold's list of three coordinate arrays."""
    return [jnp.asarray(points[..., i]) for i in range(3)]


def _quat_affine(quat, trans):
    return quat_affine.QuatAffine(jnp.asarray(quat), jnp.asarray(trans), normalize=True, unstack_inputs=True)


def _r3_rigids(rigid):
    rot, trans = jnp.asarray(rigid.rot.numpy()), jnp.asarray(rigid.trans.numpy())
    return r3.Rigids(r3.rots_from_tensor3x3(rot), r3.vecs_from_tensor(trans))


def _r3_to_torch(rigids):
    rot = np.stack([np.asarray(x) for x in rigids.rot], axis=-1).reshape(*np.shape(rigids.rot.xx), 3, 3)
    return Rigid(torch.from_numpy(rot), torch.from_numpy(np.array(r3.vecs_to_tensor(rigids.trans))))


def _assert_rotations(rot, atol=ATOL):
    eye = rot_identity(rot.shape[:-2], dtype=rot.dtype)
    _close(rot @ rot.transpose(-1, -2), eye, atol)
    _close(torch.linalg.det(rot), np.ones(rot.shape[:-2]), atol)


# AlphaFold's QuatAffine.


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_quat_to_rot_normalized_matches_quat_affine(scale):
    quat, trans = _random((4, 5, 4), 0, scale), _random((4, 5, 3), 1)
    affine = _quat_affine(quat, trans)
    rot = quat_to_rot(torch.from_numpy(quat), normalize=True)
    _close(rot, quat_affine.rot_list_to_tensor(affine.rotation))
    _assert_rotations(rot)


def test_quat_to_rot_unit_matches_quat_affine():
    quat = _random((7, 4), 2)
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    expected = quat_affine.rot_list_to_tensor(quat_affine.quat_to_rot(jnp.asarray(quat)))
    _close(quat_to_rot(torch.from_numpy(quat), normalize=False), expected)


def test_pre_compose_matches_quat_affine():
    quat, trans, update = _random((3, 6, 4), 3), _random((3, 6, 3), 4, 5.0), _random((3, 6, 6), 5)
    affine = _quat_affine(quat, trans)
    expected = affine.pre_compose(jnp.asarray(update))

    rigid = Rigid.from_tensor_7(torch.from_numpy(np.concatenate([quat, trans], -1)), normalize=True)
    updated = rigid.pre_compose(torch.from_numpy(update))
    _close(updated.rot, quat_affine.rot_list_to_tensor(expected.rotation))
    _close(updated.trans, quat_affine.vec_list_to_tensor(expected.translation))
    _assert_rotations(updated.rot)

    unit_quat = torch.from_numpy(quat / np.linalg.norm(quat, axis=-1, keepdims=True))
    _close(quat_update(unit_quat, torch.from_numpy(update[..., :3])), expected.quaternion)
    _close(updated.to_tensor_7()[..., :4], expected.quaternion * np.sign(expected.quaternion[..., :1]))


def test_apply_and_invert_point_match_quat_affine():
    quat, trans, points = _random((2, 5, 4), 6), _random((2, 5, 3), 7, 5.0), _random((2, 5, 8, 3), 8, 5.0)
    affine = _quat_affine(quat, trans)
    rigid = Rigid.from_tensor_7(torch.from_numpy(np.concatenate([quat, trans], -1)), normalize=True)
    torch_points = torch.from_numpy(points)

    expected = np.stack(affine.apply_to_point(_unstack(points), extra_dims=1), axis=-1)
    _close(rigid[..., None].apply(torch_points), expected)
    expected = np.stack(affine.invert_point(_unstack(points), extra_dims=1), axis=-1)
    _close(rigid[..., None].invert_apply(torch_points), expected)


def test_quat_multiply_matches_quat_affine():
    a, b = _random((6, 4), 9), _random((6, 4), 10)
    expected = quat_affine.quat_multiply(jnp.asarray(a), jnp.asarray(b))
    _close(quat_multiply(torch.from_numpy(a), torch.from_numpy(b)), expected)


def _awkward_rotations():
    """Identity, half turns about axes (w = 0) and random rotations, ``[12, 3, 3]``."""
    half_turns = [[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 1, 0], [0, 1, -1, 1], [1e-4, 0, 0, 1]]
    quats = np.concatenate([[[1.0, 0, 0, 0]], half_turns, _random((5, 4), 11)]).astype(np.float32)
    return quat_to_rot(torch.from_numpy(quats), normalize=True)


def test_rot_to_quat_matches_quat_affine_up_to_sign():
    rot = _awkward_rotations()
    quat = rot_to_quat(rot)
    expected = np.asarray(quat_affine.rot_to_quat(jnp.asarray(rot.numpy()), unstack_inputs=True))
    sign = np.sign(np.sum(quat.numpy() * expected, axis=-1, keepdims=True))
    _close(quat, expected * sign)
    assert torch.all(quat[..., 0] >= 0)


def test_quaternion_round_trip():
    quat = torch.from_numpy(_random((50, 4), 12))
    quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)
    round_trip = rot_to_quat(quat_to_rot(quat))
    _close(round_trip, quat * torch.sign(quat[..., :1]))
    rot = _awkward_rotations()
    _close(quat_to_rot(rot_to_quat(rot), normalize=False), rot)


# AlphaFold's r3.


def test_rigids_from_3_points_matches_r3():
    points = [_random((4, 8, 3), seed, 3.0) for seed in (13, 14, 15)]
    rigid = rigids_from_3_points(*(torch.from_numpy(p) for p in points))
    expected = _r3_to_torch(r3.rigids_from_3_points(*(r3.vecs_from_tensor(jnp.asarray(p)) for p in points)))
    _close(rigid.rot, expected.rot)
    _close(rigid.trans, expected.trans)
    _assert_rotations(rigid.rot)

    # The supplement's rigidFrom3Points(N, CA, C): x axis from CA towards C.
    n, ca, c = (torch.from_numpy(p) for p in points)
    supplement_x_axis = rigids_from_3_points(2 * ca - c, ca, n).rot[..., 0]
    _close(supplement_x_axis, (c - ca) / torch.linalg.vector_norm(c - ca, dim=-1, keepdim=True))

    neg_x, origin, xy = (rigid.invert_apply(torch.from_numpy(p)) for p in points)
    _close(origin, np.zeros((4, 8, 3)))
    assert torch.all(neg_x[..., 0] < 0) and torch.all(xy[..., 1] > 0)
    _close(neg_x[..., 1:], np.zeros((4, 8, 2)), 1e-4)
    _close(xy[..., 2], np.zeros((4, 8)), 1e-4)


def test_compose_invert_apply_match_r3():
    a, b = _random_rigid((3, 5), 16), _random_rigid((3, 5), 17)
    points = _random((3, 5, 3), 18, 5.0)

    composed = _r3_to_torch(r3.rigids_mul_rigids(_r3_rigids(a), _r3_rigids(b)))
    _close(a.compose(b).rot, composed.rot)
    _close(a.compose(b).trans, composed.trans)

    inverted = _r3_to_torch(r3.invert_rigids(_r3_rigids(a)))
    _close(a.invert().rot, inverted.rot)
    _close(a.invert().trans, inverted.trans)

    applied = r3.vecs_to_tensor(r3.rigids_mul_vecs(_r3_rigids(a), r3.vecs_from_tensor(jnp.asarray(points))))
    _close(a.apply(torch.from_numpy(points)), applied)


# Properties.


def test_compose_is_associative():
    a, b, c = (_random_rigid((10,), seed) for seed in (19, 20, 21))
    left, right = a.compose(b).compose(c), a.compose(b.compose(c))
    _close(left.rot, right.rot)
    _close(left.trans, right.trans, 1e-4)


def test_invert_compose_is_identity():
    rigid = _random_rigid((4, 6), 22)
    for product in (rigid.invert().compose(rigid), rigid.compose(rigid.invert())):
        _close(product.rot, rot_identity((4, 6)))
        _close(product.trans, np.zeros((4, 6, 3)), 1e-5)
    points = torch.from_numpy(_random((4, 6, 3), 23, 5.0))
    _close(rigid.invert_apply(rigid.apply(points)), points, 1e-5)


def test_tensor_4x4_and_7_round_trips():
    rigid = _random_rigid((2, 3), 24)
    tensor_4x4 = rigid.to_tensor_4x4()
    _close(tensor_4x4[..., 3, :], np.broadcast_to([0.0, 0, 0, 1], (2, 3, 4)))
    back = Rigid.from_tensor_4x4(tensor_4x4)
    assert torch.equal(back.rot, rigid.rot) and torch.equal(back.trans, rigid.trans)

    back = Rigid.from_tensor_7(rigid.to_tensor_7())
    _close(back.rot, rigid.rot)
    assert torch.equal(back.trans, rigid.trans)


def test_rot_x_from_sin_cos():
    angle = torch.from_numpy(_random((5, 7), 25, 3.0))
    rot = rot_x_from_sin_cos(torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1))
    zeros = torch.zeros_like(angle)
    half_angle_quat = torch.stack([torch.cos(angle / 2), torch.sin(angle / 2), zeros, zeros], dim=-1)
    _close(rot, quat_to_rot(half_angle_quat))
    unnormalised = rot_x_from_sin_cos(torch.tensor([0.6, 1.6]))
    _close(unnormalised, np.array([[1.0, 0, 0], [0, 1.6, -0.6], [0, 0.6, 1.6]]))


def test_rot_compose_broadcasts_like_matmul():
    a, b = _random_rigid((4, 1), 26).rot, _random_rigid((3,), 27).rot
    _close(rot_compose(a, b), a @ b)


def test_shape_helpers_follow_tensor_semantics():
    rigid = _random_rigid((2, 3), 28)
    other = _random_rigid((2, 3), 29)
    cases = [
        (rigid[1], rigid.rot[1], rigid.trans[1]),
        (rigid[..., None], rigid.rot[:, :, None], rigid.trans[:, :, None]),
        (rigid[:, torch.tensor([2, 0])], rigid.rot[:, [2, 0]], rigid.trans[:, [2, 0]]),
        (rigid.reshape(6), rigid.rot.reshape(6, 3, 3), rigid.trans.reshape(6, 3)),
        (rigid.unsqueeze(-1), rigid.rot[:, :, None], rigid.trans[:, :, None]),
        (rigid.unsqueeze(0), rigid.rot[None], rigid.trans[None]),
        (Rigid.cat([rigid, other], dim=-1), torch.cat([rigid.rot, other.rot], 1),
         torch.cat([rigid.trans, other.trans], 1)),
        (Rigid.stack([rigid, other], dim=-1), torch.stack([rigid.rot, other.rot], 2),
         torch.stack([rigid.trans, other.trans], 2)),
        (Rigid.stack([rigid, other], dim=0), torch.stack([rigid.rot, other.rot]),
         torch.stack([rigid.trans, other.trans])),
    ]
    for result, rot, trans in cases:
        assert result.shape == trans.shape[:-1]
        assert torch.equal(result.rot, rot) and torch.equal(result.trans, trans)


def test_identity_scale_and_dtypes():
    identity = Rigid.identity((2, 4))
    assert identity.shape == (2, 4)
    points = torch.from_numpy(_random((2, 4, 3), 30))
    assert torch.equal(identity.apply(points), points)

    rigid = _random_rigid((5,), 31)
    assert torch.equal(rigid.scale_translation(10.0).trans, rigid.trans * 10.0)

    half = Rigid(rigid.rot.bfloat16(), rigid.trans.half())
    assert half.dtype == torch.float32 and half.trans.dtype == torch.float32
    assert rigid.to(dtype=torch.bfloat16).dtype == torch.float32
    assert rigid.to(dtype=torch.float64).trans.dtype == torch.float64
    assert half.apply(torch.ones(5, 3, dtype=torch.bfloat16)).dtype == torch.float32
    assert quat_to_rot(torch.ones(4, dtype=torch.bfloat16)).dtype == torch.float32

    with pytest.raises(ValueError, match="batch shapes differ"):
        Rigid(rigid.rot, rigid.trans[:2])


def test_stop_rot_gradient():
    rigid = _random_rigid((5,), 32)
    rot, trans = rigid.rot.clone().requires_grad_(), rigid.trans.clone().requires_grad_()
    stopped = Rigid(rot, trans).stop_rot_gradient()
    assert not stopped.rot.requires_grad
    stopped.apply(torch.ones(5, 3)).sum().backward()
    assert rot.grad is None
    _close(trans.grad, np.ones((5, 3)))


def test_gradients_flow():
    rng = torch.Generator().manual_seed(33)

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=rng, requires_grad=True)

    def apply(rot, trans, points):
        return Rigid(rot, trans).apply(points), Rigid(rot, trans).invert_apply(points)

    def compose(rot_a, trans_a, rot_b, trans_b):
        composed = Rigid(rot_a, trans_a).compose(Rigid(rot_b, trans_b))
        return composed.rot, composed.trans

    def pre_compose(quat, trans, update):
        rigid = Rigid.from_tensor_7(torch.cat([quat, trans], -1), normalize=True)
        return rigid.pre_compose(update).to_tensor_4x4()

    def from_points(a, b, c):
        return rigids_from_3_points(a, b, c).to_tensor_4x4()

    assert torch.autograd.gradcheck(apply, (rand(4, 3, 3), rand(4, 3), rand(2, 4, 3)))
    assert torch.autograd.gradcheck(compose, (rand(4, 3, 3), rand(4, 3), rand(4, 3, 3), rand(4, 3)))
    assert torch.autograd.gradcheck(pre_compose, (rand(4, 4), rand(4, 3), rand(4, 6)))
    assert torch.autograd.gradcheck(from_points, (rand(4, 3), rand(4, 3), rand(4, 3)))
    assert torch.autograd.gradcheck(rot_to_quat, (quat_to_rot(rand(4, 4)).detach().requires_grad_(),))
