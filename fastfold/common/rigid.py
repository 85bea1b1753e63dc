"""Rigid-body maths in torch: rotations, quaternions and frames.

Used by the structure module (Algorithms 20-25 of the AlphaFold2 supplement), FAPE and the data
pipeline's ground-truth frames. Conventions follow AlphaFold's ``quat_affine`` and ``r3``:

* a rotation is a matrix ``[*, 3, 3]`` acting on column vectors, ``x' = R x``;
* a quaternion is ``[*, 4]``, scalar first ``(w, x, y, z)``;
* a frame ``T = (R, t)`` maps local to global coordinates, ``x_global = R x_local + t``, and
  ``T1.compose(T2)`` applies ``T2`` first.

Rotations are computed in float32 at least (half-precision inputs are cast up), as AlphaFold's
structure module does, and with elementwise products rather than ``matmul``, so a global TF32
setting cannot lower their precision.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Cast half-precision tensors to float32; leave float32 and float64 unchanged."""
    return x.float() if x.dtype in _HALF_DTYPES else x


def _batch_dim(dim: int, trailing: int) -> int:
    """Turn a dimension of the batch shape into one of a tensor with ``trailing`` extra dimensions."""
    return dim if dim >= 0 else dim - trailing


def rot_identity(batch_shape: Sequence[int], dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Identity rotations.

    Returns
    -------
    torch.Tensor
        ``[*batch_shape, 3, 3]``.
    """
    return torch.eye(3, dtype=dtype, device=device).expand(*batch_shape, 3, 3).clone()


def rot_compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Matrix product ``a @ b`` of rotations ``[*, 3, 3]`` (``b`` acts first); batch dims broadcast."""
    a, b = _at_least_float32(a), _at_least_float32(b)
    return (a[..., :, :, None] * b[..., None, :, :]).sum(dim=-2)


def rot_invert(rot: torch.Tensor) -> torch.Tensor:
    """Inverse (transpose) of rotations ``[*, 3, 3]``."""
    return rot.transpose(-1, -2)


def rot_apply(rot: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Rotate points: ``R x`` for ``rot`` ``[*, 3, 3]`` and ``points`` ``[*, 3]``; batch dims broadcast."""
    return (_at_least_float32(rot) * _at_least_float32(points)[..., None, :]).sum(dim=-1)


def quat_to_rot(quat: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Rotation matrices from quaternions ``(w, x, y, z)``, as AlphaFold's ``QuatAffine``.

    Parameters
    ----------
    quat
        ``[*, 4]``, scalar first.
    normalize
        Divide by the norm first (an unnormalised quaternion then gives the same rotation as its
        unit version). When false, the quaternion must already be of unit norm.

    Returns
    -------
    torch.Tensor
        ``[*, 3, 3]``.
    """
    quat = _at_least_float32(quat)
    if normalize:
        quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)
    w, x, y, z = quat.unbind(dim=-1)
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    wx, wy, wz = w * x, w * y, w * z
    xy, xz, yz = x * y, x * z, y * z
    entries = [
        ww + xx - yy - zz, 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), ww - xx + yy - zz, 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), ww - xx - yy + zz,
    ]
    return torch.stack(entries, dim=-1).unflatten(-1, (3, 3))  # [*, 3, 3]


def rot_to_quat(rot: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` from rotation matrices.

    For a rotation, the symmetric matrix ``M`` below equals ``4 q q^T``; its row with the largest
    diagonal entry (``4 q_i^2 >= 1``) is ``4 q_i q``, so normalising that row gives ``q`` stably for
    any rotation, including half turns (Shepperd's method).

    Parameters
    ----------
    rot
        ``[*, 3, 3]``.

    Returns
    -------
    torch.Tensor
        ``[*, 4]``.
    """
    rot = _at_least_float32(rot)
    (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = (row.unbind(dim=-1) for row in rot.unbind(dim=-2))
    rows = [
        [1 + xx + yy + zz, zy - yz, xz - zx, yx - xy],
        [zy - yz, 1 + xx - yy - zz, xy + yx, xz + zx],
        [xz - zx, xy + yx, 1 - xx + yy - zz, yz + zy],
        [yx - xy, xz + zx, yz + zy, 1 - xx - yy + zz],
    ]
    m = torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)  # [*, 4, 4]
    best = torch.diagonal(m, dim1=-2, dim2=-1).argmax(dim=-1)  # [*]
    quat = torch.take_along_dim(m, best[..., None, None], dim=-2).squeeze(-2)  # [*, 4]
    quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)
    return torch.where(quat[..., :1] < 0, -quat, quat)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a b`` of quaternions ``[*, 4]`` (scalar first); batch dims broadcast."""
    a, b = torch.broadcast_tensors(_at_least_float32(a), _at_least_float32(b))
    aw, ax, ay, az = a.unbind(dim=-1)
    bw, bx, by, bz = b.unbind(dim=-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_update(quat: torch.Tensor, vector_update: torch.Tensor) -> torch.Tensor:
    """Pre-compose the update ``(1, b, c, d)`` onto ``quat`` and normalise (Algorithms 20 and 23).

    The quaternion form of ``T_i <- T_i o BackboneUpdate(s_i)``, as AlphaFold's ``QuatAffine.pre_compose``.

    Parameters
    ----------
    quat
        ``[*, 4]``, unit norm.
    vector_update
        ``[*, 3]``, the ``(b, c, d)`` predicted by the backbone update; zero is the identity.

    Returns
    -------
    torch.Tensor
        ``[*, 4]``, the unit quaternion of ``quat (1, b, c, d)``.
    """
    update = torch.nn.functional.pad(_at_least_float32(vector_update), (1, 0), value=1.0)
    new_quat = quat_multiply(quat, update)
    return new_quat / torch.linalg.vector_norm(new_quat, dim=-1, keepdim=True)


def rot_from_two_vectors(x_axis: torch.Tensor, xy_plane: torch.Tensor, epsilon: float = 1e-8) -> torch.Tensor:
    """Rotation whose x axis points along ``x_axis`` and whose xy plane holds ``xy_plane`` (Gram-Schmidt).

    Parameters
    ----------
    x_axis, xy_plane
        ``[*, 3]``, unnormalised.
    epsilon
        Added to squared norms before the square root, as AlphaFold's ``vecs_robust_normalize``.

    Returns
    -------
    torch.Tensor
        ``[*, 3, 3]`` with columns ``e0, e1, e2 = e0 x e1``.
    """
    def normalize(v: torch.Tensor) -> torch.Tensor:
        return v / torch.sqrt((v * v).sum(dim=-1, keepdim=True) + epsilon)

    e0 = normalize(_at_least_float32(x_axis))
    xy_plane = _at_least_float32(xy_plane)
    e1 = normalize(xy_plane - (xy_plane * e0).sum(dim=-1, keepdim=True) * e0)
    e2 = torch.linalg.cross(e0, e1, dim=-1)
    return torch.stack([e0, e1, e2], dim=-1)


def rot_x_from_sin_cos(sin_cos: torch.Tensor) -> torch.Tensor:
    """Rotations about the x axis from ``(sin, cos)`` pairs (Algorithm 25, makeRotX).

    Used for the torsion frames (omega, phi, psi, chi1-4) of Algorithm 24; the pair need not be
    normalised (AlphaFold uses it as given).

    Parameters
    ----------
    sin_cos
        ``[*, 2]``, ``sin`` first.

    Returns
    -------
    torch.Tensor
        ``[*, 3, 3]`` equal to ``[[1, 0, 0], [0, cos, -sin], [0, sin, cos]]``.
    """
    sin, cos = _at_least_float32(sin_cos).unbind(dim=-1)
    zero, one = torch.zeros_like(sin), torch.ones_like(sin)
    entries = [one, zero, zero, zero, cos, -sin, zero, sin, cos]
    return torch.stack(entries, dim=-1).unflatten(-1, (3, 3))


@dataclass(frozen=True, eq=False)
class Rigid:
    """Rigid transformations ``x -> rot x + trans`` with batch shape ``[*]``.

    Attributes
    ----------
    rot
        ``[*, 3, 3]`` rotation matrices, float32 at least (half inputs are cast up).
    trans
        ``[*, 3]`` translations, same dtype as ``rot``.
    """

    rot: torch.Tensor
    trans: torch.Tensor

    def __post_init__(self):
        if self.rot.shape[-2:] != (3, 3) or self.trans.shape[-1:] != (3,):
            raise ValueError(f"Rigid needs rot [*, 3, 3] and trans [*, 3]; got {tuple(self.rot.shape)} "
                             f"and {tuple(self.trans.shape)}")
        if self.rot.shape[:-2] != self.trans.shape[:-1]:
            raise ValueError(f"Rigid batch shapes differ: rot {tuple(self.rot.shape)}, "
                             f"trans {tuple(self.trans.shape)}")
        rot = _at_least_float32(self.rot)
        object.__setattr__(self, "rot", rot)
        object.__setattr__(self, "trans", self.trans.to(rot.dtype))

    # Construction and conversion.

    @classmethod
    def identity(cls, batch_shape: Sequence[int], dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> "Rigid":
        """Identity frames of batch shape ``[*batch_shape]``."""
        rot = rot_identity(batch_shape, dtype=dtype, device=device)
        return cls(rot, rot.new_zeros(*batch_shape, 3))

    @classmethod
    def from_tensor_4x4(cls, tensor: torch.Tensor) -> "Rigid":
        """Frames from homogeneous matrices ``[*, 4, 4]`` (the last row is ignored)."""
        return cls(tensor[..., :3, :3], tensor[..., :3, 3])

    def to_tensor_4x4(self) -> torch.Tensor:
        """Homogeneous matrices ``[*, 4, 4]`` with last row ``(0, 0, 0, 1)``."""
        top = torch.cat([self.rot, self.trans[..., None]], dim=-1)  # [*, 3, 4]
        bottom = torch.zeros_like(top[..., :1, :])
        bottom[..., 0, 3] = 1.0
        return torch.cat([top, bottom], dim=-2)

    @classmethod
    def from_tensor_7(cls, tensor: torch.Tensor, normalize: bool = False) -> "Rigid":
        """Frames from ``[*, 7]``: quaternion ``(w, x, y, z)`` then translation, as QuatAffine.from_tensor."""
        return cls(quat_to_rot(tensor[..., :4], normalize=normalize), tensor[..., 4:])

    def to_tensor_7(self) -> torch.Tensor:
        """``[*, 7]``: unit quaternion with ``w >= 0`` (see :func:`rot_to_quat`) then translation."""
        return torch.cat([rot_to_quat(self.rot), self.trans], dim=-1)

    # Shape and placement.

    @property
    def shape(self) -> torch.Size:
        """The batch shape ``[*]``."""
        return self.trans.shape[:-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.rot.dtype

    @property
    def device(self) -> torch.device:
        return self.rot.device

    def __getitem__(self, index) -> "Rigid":
        """Index the batch dimensions, as a tensor of shape ``[*]`` would be."""
        index = index if isinstance(index, tuple) else (index,)
        return Rigid(self.rot[(*index, slice(None), slice(None))], self.trans[(*index, slice(None))])

    def reshape(self, *batch_shape: int) -> "Rigid":
        """Reshape the batch dimensions to ``batch_shape``."""
        return Rigid(self.rot.reshape(*batch_shape, 3, 3), self.trans.reshape(*batch_shape, 3))

    def unsqueeze(self, dim: int) -> "Rigid":
        """Insert a batch dimension of size one at ``dim`` (counted in the batch shape)."""
        return Rigid(self.rot.unsqueeze(_batch_dim(dim, 2)), self.trans.unsqueeze(_batch_dim(dim, 1)))

    @staticmethod
    def cat(rigids: Sequence["Rigid"], dim: int) -> "Rigid":
        """Concatenate frames along batch dimension ``dim``."""
        return Rigid(torch.cat([r.rot for r in rigids], dim=_batch_dim(dim, 2)),
                     torch.cat([r.trans for r in rigids], dim=_batch_dim(dim, 1)))

    @staticmethod
    def stack(rigids: Sequence["Rigid"], dim: int) -> "Rigid":
        """Stack frames along a new batch dimension ``dim``."""
        return Rigid(torch.stack([r.rot for r in rigids], dim=_batch_dim(dim, 2)),
                     torch.stack([r.trans for r in rigids], dim=_batch_dim(dim, 1)))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Rigid":
        """Move to ``device`` and/or cast to ``dtype`` (half dtypes end as float32)."""
        return Rigid(self.rot.to(device=device, dtype=dtype), self.trans.to(device=device, dtype=dtype))

    # Algebra.

    def compose(self, other: "Rigid") -> "Rigid":
        """``self o other`` (``other`` applied first): ``(R1 R2, R1 t2 + t1)``; batch dims broadcast."""
        return Rigid(rot_compose(self.rot, other.rot), rot_apply(self.rot, other.trans) + self.trans)

    def invert(self) -> "Rigid":
        """The inverse frames ``(R^T, -R^T t)``."""
        rot_inv = rot_invert(self.rot)
        return Rigid(rot_inv, -rot_apply(rot_inv, self.trans))

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """Map local points ``[*, 3]`` to global ones, ``R x + t``; batch dims broadcast.

        The result is float32 at least (for half-precision points too).
        """
        return rot_apply(self.rot, points) + self.trans

    def invert_apply(self, points: torch.Tensor) -> torch.Tensor:
        """Map global points ``[*, 3]`` to local ones, ``R^T (x - t)``; batch dims broadcast."""
        return rot_apply(rot_invert(self.rot), _at_least_float32(points) - self.trans)

    def pre_compose(self, update: torch.Tensor) -> "Rigid":
        """Apply a backbone update first, ``T <- T o BackboneUpdate`` (Algorithms 20 and 23).

        The rotation-matrix form of AlphaFold's ``QuatAffine.pre_compose``.

        Parameters
        ----------
        update
            ``[*, 6]``: ``(b, c, d)`` of the quaternion update ``(1, b, c, d)`` (normalised here),
            then the translation update, expressed in the local frame.

        Returns
        -------
        Rigid
            ``self o (R(1, b, c, d), t_update)``.
        """
        quat = torch.nn.functional.pad(_at_least_float32(update[..., :3]), (1, 0), value=1.0)
        return self.compose(Rigid(quat_to_rot(quat, normalize=True), update[..., 3:]))

    def scale_translation(self, factor: float) -> "Rigid":
        """Multiply the translations by ``factor`` (e.g. AlphaFold's ``position_scale``)."""
        return Rigid(self.rot, self.trans * factor)

    def stop_rot_gradient(self) -> "Rigid":
        """Detach the rotations; AlphaFold stops their gradient between structure module iterations."""
        return Rigid(self.rot.detach(), self.trans)


def rigids_from_3_points(point_on_neg_x_axis: torch.Tensor, origin: torch.Tensor,
                         point_on_xy_plane: torch.Tensor, epsilon: float = 1e-8) -> Rigid:
    """Frames from three points by Gram-Schmidt (Algorithm 21), as AlphaFold's ``r3.rigids_from_3_points``.

    The x axis points from ``point_on_neg_x_axis`` towards ``origin`` and ``point_on_xy_plane`` lies in
    the xy plane on the positive y side. The supplement's ``rigidFrom3Points(x1, x2, x3)`` (x axis
    from ``x2`` towards ``x3``, ``x1`` in the xy plane) is ``rigids_from_3_points(2 x2 - x3, x2, x1)``;
    AlphaFold's backbone ground truth calls this function with ``(C, CA, N)`` and then flips x and z.

    Parameters
    ----------
    point_on_neg_x_axis, origin, point_on_xy_plane
        ``[*, 3]`` each.
    epsilon
        Added to squared norms before the square root.

    Returns
    -------
    Rigid
        Batch shape ``[*]``, mapping local to global coordinates.
    """
    origin = _at_least_float32(origin)
    rot = rot_from_two_vectors(origin - _at_least_float32(point_on_neg_x_axis),
                               _at_least_float32(point_on_xy_plane) - origin, epsilon=epsilon)
    return Rigid(rot, origin)
