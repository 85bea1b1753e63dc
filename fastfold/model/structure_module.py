"""The structure module (Algorithms 20-24 of the AlphaFold2 supplement).

Backbone frames are carried between iterations as unit quaternions and translations, as AlphaFold's
``QuatAffine`` does, with translations in units of ``position_scale`` Angstrom (nanometres for the
published models): the invariant point attention sees points in those units, and the side chains,
the trajectory and the final atoms are in Angstrom. The quaternion (hence the rotation) is detached
between iterations, as in AlphaFold; gradients flow through the translations.

Module and parameter names follow AlphaFold's haiku tree (``structure_module/fold_iteration/...``);
the fold iteration is one module applied ``num_layer`` times with shared weights.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from fastfold.common.rigid import Rigid, quat_to_rot, quat_update
from fastfold.model import all_atom
from fastfold.model.primitives import LayerNorm, Linear


def _haiku_suffix(index: int) -> str:
    """Haiku's name for the ``index``-th module of the same name in a scope: "", "_1", "_2", ..."""
    return f"_{index}" if index else ""


class InvariantPointAttention(nn.Module):
    """Invariant point attention (Algorithm 22).

    Attention logits add three terms weighted by ``sqrt(1/3)`` each: scalar query-key products
    (scaled by ``1/sqrt(C_qk)``), minus half the squared distances of query and key points in the
    global frame (weighted per head by ``softplus(trainable_point_weights) * sqrt(2 / (9 N_point_qk))``,
    the softplus starting at one), and a linear projection of the pair representation; padding pairs
    get -1e5. The output projects the scalar values, the value points mapped back into each query's
    frame (x, y, z and their norms) and the attended pair representation.

    Parameters
    ----------
    config
        ``model.heads.structure_module``: ``num_head``, ``num_scalar_qk``, ``num_point_qk``,
        ``num_scalar_v``, ``num_point_v``, ``num_channel``.
    global_config
        ``model.global_config``: ``zero_init``.
    pair_channel : int
        C_z, channels of the pair representation.
    dist_epsilon : float
        Added under the square root of the point norms.
    """

    def __init__(self, config, global_config, pair_channel: int, dist_epsilon: float = 1e-8):
        super().__init__()
        self.num_head = config.num_head
        self.num_scalar_qk, self.num_point_qk = config.num_scalar_qk, config.num_point_qk
        self.num_scalar_v, self.num_point_v = config.num_scalar_v, config.num_point_v
        self.dist_epsilon = dist_epsilon
        channel, heads = config.num_channel, config.num_head
        self.q_scalar = Linear(channel, heads * self.num_scalar_qk)
        self.kv_scalar = Linear(channel, heads * (self.num_scalar_qk + self.num_scalar_v))
        self.q_point_local = Linear(channel, 3 * heads * self.num_point_qk)
        self.kv_point_local = Linear(channel, 3 * heads * (self.num_point_qk + self.num_point_v))
        self.trainable_point_weights = nn.Parameter(torch.full([heads], math.log(math.e - 1.0)))
        self.attention_2d = Linear(pair_channel, heads)
        num_features = heads * (self.num_scalar_v + 4 * self.num_point_v + pair_channel)
        self.output_projection = Linear(num_features, channel,
                                        initializer="zeros" if global_config.zero_init else "linear")

    def _points(self, linear: Linear, single: torch.Tensor, frames: Rigid, num_point: int) -> torch.Tensor:
        """Points predicted in each residue's frame, mapped to the global frame: [*, N, H, P, 3]."""
        local = linear(single).unflatten(-1, (3, self.num_head, num_point))  # [*, N, 3, H, P]
        local = local.movedim(-3, -1)  # [*, N, H, P, 3]
        return frames[..., None, None].apply(local)

    def forward(self, single: torch.Tensor, pair: torch.Tensor, mask: torch.Tensor,
                frames: Rigid) -> torch.Tensor:
        """Update the single representation.

        Parameters
        ----------
        single : [*, N, C_s]
        pair : [*, N, N, C_z]
        mask : [*, N]
            1 for residues that take part, 0 for padding.
        frames : Rigid [*, N]
            Backbone frames, translations in ``position_scale`` units.

        Returns
        -------
        torch.Tensor [*, N, C_s]
        """
        heads, c_qk, c_v = self.num_head, self.num_scalar_qk, self.num_scalar_v
        # Lines 1-3: scalar queries, keys, values; points in the global frame.
        q_scalar = self.q_scalar(single).float().unflatten(-1, (heads, c_qk))  # [*, N, H, C_qk]
        k_scalar, v_scalar = self.kv_scalar(single).float().unflatten(-1, (heads, c_qk + c_v)).split(
            [c_qk, c_v], dim=-1)
        q_point = self._points(self.q_point_local, single, frames, self.num_point_qk)  # [*, N, H, P_qk, 3]
        k_point, v_point = self._points(self.kv_point_local, single, frames,
                                        self.num_point_qk + self.num_point_v).split(
            [self.num_point_qk, self.num_point_v], dim=-2)

        # Line 7: logits [*, H, N_q, N_k], computed in float32.
        scalar_weight = math.sqrt(1.0 / (3 * c_qk))
        point_weight = math.sqrt(1.0 / (3 * self.num_point_qk * 9.0 / 2))
        head_point_weight = point_weight * F.softplus(self.trainable_point_weights.float())  # [H]
        logits = torch.einsum("...ihc,...jhc->...hij", q_scalar * scalar_weight, k_scalar)
        # -|q_i - k_j|^2 / 2 summed over points, expanded so that the cross term is one matmul.
        q_point, k_point = q_point.flatten(-2), k_point.flatten(-2)  # [*, N, H, 3 P_qk]
        q_norm = q_point.square().sum(dim=-1).movedim(-1, -2)  # [*, H, N]
        k_norm = k_point.square().sum(dim=-1).movedim(-1, -2)
        point_logits = (torch.einsum("...ihc,...jhc->...hij", q_point, k_point)
                        - 0.5 * (q_norm[..., :, None] + k_norm[..., None, :]))
        logits = logits + head_point_weight[:, None, None] * point_logits
        logits = logits + math.sqrt(1.0 / 3) * self.attention_2d(pair).float().movedim(-1, -3)
        mask = mask.float()
        logits = logits - 1e5 * (1.0 - mask[..., None, None, :] * mask[..., None, :, None])
        attention = torch.softmax(logits, dim=-1)  # [*, H, N_q, N_k]

        # Lines 8-11: attend to scalar values, value points (mapped back to local) and the pair.
        result_scalar = torch.einsum("...hij,...jhc->...ihc", attention, v_scalar)  # [*, N, H, C_v]
        result_point = torch.einsum("...hij,...jhc->...ihc", attention, v_point.flatten(-2))
        result_point = frames[..., None, None].invert_apply(result_point.unflatten(-1, (self.num_point_v, 3)))
        point_norm = torch.sqrt(self.dist_epsilon + result_point.square().sum(dim=-1))  # [*, N, H, P_v]
        result_pair = torch.einsum("...hij,...ijc->...ihc", attention.to(pair.dtype), pair)  # [*, N, H, C_z]

        features = [result_scalar.flatten(-2), *(result_point[..., d].flatten(-2) for d in range(3)),
                    point_norm.flatten(-2), result_pair.flatten(-2)]
        features = torch.cat([f.to(single.dtype) for f in features], dim=-1)
        return self.output_projection(features)


class MultiRigidSidechain(nn.Module):
    """Torsion angles from the single representation, then all atom positions (Algorithm 20 lines
    11-14, Algorithm 24).

    Parameters
    ----------
    config
        ``structure_module.sidechain``: ``num_channel``, ``num_residual_block``.
    global_config
        ``zero_init``.
    input_channels : tuple of int
        Channels of the representations it reads: (current single, initial single).
    """

    def __init__(self, config, global_config, input_channels: tuple):
        super().__init__()
        channel = config.num_channel
        self.num_inputs = len(input_channels)
        self.num_residual_block = config.num_residual_block
        for index, in_channel in enumerate(input_channels):
            self.add_module(f"input_projection{_haiku_suffix(index)}", Linear(in_channel, channel))
        final_init = "zeros" if global_config.zero_init else "linear"
        for block in range(config.num_residual_block):
            suffix = _haiku_suffix(block)
            self.add_module(f"resblock1{suffix}", Linear(channel, channel, initializer="relu"))
            self.add_module(f"resblock2{suffix}", Linear(channel, channel, initializer=final_init))
        self.unnormalized_angles = Linear(channel, 14)

    def forward(self, backbone_to_global: Rigid, representations: list, aatype: torch.Tensor) -> dict:
        """Predict torsion angles and build the side chains.

        Parameters
        ----------
        backbone_to_global : Rigid [*, N]
            Backbone frames, translations in Angstrom.
        representations : list of tensors
            [*, N, C_i], in the order of ``input_channels``.
        aatype : [*, N]

        Returns
        -------
        dict
            ``angles_sin_cos`` and ``unnormalized_angles_sin_cos`` [*, N, 7, 2], ``frames`` Rigid
            [*, N, 8] (group-to-global) and ``atom_pos`` [*, N, 14, 3] in Angstrom.
        """
        # Line 11: a_i = Linear(relu(s_i)) + Linear(relu(s_i^initial)).
        act = sum(getattr(self, f"input_projection{_haiku_suffix(index)}")(F.relu(x))
                  for index, x in enumerate(representations))
        for block in range(self.num_residual_block):  # line 12
            update = getattr(self, f"resblock1{_haiku_suffix(block)}")(F.relu(act), relu=True)
            act = act + getattr(self, f"resblock2{_haiku_suffix(block)}")(update)
        unnormalized = self.unnormalized_angles(F.relu(act)).unflatten(-1, (7, 2)).float()  # line 13
        norm = torch.sqrt(torch.clamp(unnormalized.square().sum(dim=-1, keepdim=True), min=1e-12))
        angles = unnormalized / norm
        frames = all_atom.torsion_angles_to_frames(aatype, backbone_to_global, angles)  # line 14
        return {
            "angles_sin_cos": angles,
            "unnormalized_angles_sin_cos": unnormalized,
            "frames": frames,
            "atom_pos": all_atom.frames_and_literature_positions_to_atom14_pos(aatype, frames),
        }


class FoldIteration(nn.Module):
    """One iteration of the structure module, shared by all iterations (Algorithm 20 lines 6-14).

    IPA, LayerNorm, a transition of ``num_layer_in_transition`` layers, LayerNorm, the backbone update
    (Algorithm 23) and the side chains of the updated frames.
    """

    def __init__(self, config, global_config, single_channel: int, pair_channel: int):
        super().__init__()
        self.config, self.global_config = config, global_config
        channel = config.num_channel
        final_init = "zeros" if global_config.zero_init else "linear"
        self.invariant_point_attention = InvariantPointAttention(config, global_config, pair_channel)
        self.attention_layer_norm = LayerNorm(channel)
        for layer in range(config.num_layer_in_transition):
            last = layer == config.num_layer_in_transition - 1
            self.add_module(f"transition{_haiku_suffix(layer)}",
                            Linear(channel, channel, initializer=final_init if last else "relu"))
        self.transition_layer_norm = LayerNorm(channel)
        self.affine_update = Linear(channel, 6, initializer=final_init)
        self.rigid_sidechain = MultiRigidSidechain(config.sidechain, global_config, (channel, single_channel))

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        training = self.training and not self.global_config.deterministic
        return F.dropout(x, p=self.config.dropout, training=training)

    def forward(self, act: torch.Tensor, quaternion: torch.Tensor, translation: torch.Tensor,
                initial_act: torch.Tensor, pair: torch.Tensor, mask: torch.Tensor,
                aatype: torch.Tensor) -> tuple:
        """Run one iteration.

        Parameters
        ----------
        act : [*, N, C_s]
            Single representation.
        quaternion : [*, N, 4]
            Unit quaternions (w, x, y, z) of the backbone frames.
        translation : [*, N, 3]
            Their translations in ``position_scale`` units.
        initial_act : [*, N, C_s]
            The layer-normed input single representation (read by the side chains).
        pair : [*, N, N, C_z]
            The layer-normed pair representation.
        mask : [*, N]
        aatype : [*, N]

        Returns
        -------
        tuple
            (act, quaternion, translation, side-chain dict of :class:`MultiRigidSidechain`), the
            frames updated but not detached.
        """
        frames = Rigid(quat_to_rot(quaternion, normalize=False), translation)
        # Lines 6-9: IPA, dropout, LayerNorm, transition, dropout, LayerNorm.
        act = act + self.invariant_point_attention(act, pair, mask, frames)
        act = self.attention_layer_norm(self._dropout(act))
        update = act
        for layer in range(self.config.num_layer_in_transition):
            update = getattr(self, f"transition{_haiku_suffix(layer)}")(
                update, relu=layer < self.config.num_layer_in_transition - 1)
        act = self.transition_layer_norm(self._dropout(act + update))

        # Line 10 (Algorithm 23): T_i <- T_i o (quaternion (1, b, c, d), t).
        backbone_update = self.affine_update(act).float()  # [*, N, 6]
        translation = frames.apply(backbone_update[..., 3:])
        quaternion = quat_update(quaternion, backbone_update[..., :3])
        frames = Rigid(quat_to_rot(quaternion, normalize=False), translation)

        sidechains = self.rigid_sidechain(frames.scale_translation(self.config.position_scale),
                                          [act, initial_act], aatype)
        return act, quaternion, translation, sidechains


class StructureModule(nn.Module):
    """The structure module head (Algorithm 20).

    Parameters
    ----------
    config
        ``model.heads.structure_module``.
    global_config
        ``model.global_config``.
    single_channel : int
        C_s of the input single representation (``embeddings_and_evoformer.seq_channel``).
    pair_channel : int
        C_z of the pair representation (``embeddings_and_evoformer.pair_channel``).
    """

    def __init__(self, config, global_config, single_channel: int, pair_channel: int):
        super().__init__()
        self.config = config
        self.single_layer_norm = LayerNorm(single_channel)
        self.initial_projection = Linear(single_channel, config.num_channel)
        self.pair_layer_norm = LayerNorm(pair_channel)
        self.fold_iteration = FoldIteration(config, global_config, single_channel, pair_channel)

    def forward(self, representations: dict, batch: dict) -> dict:
        """Predict the structure.

        Parameters
        ----------
        representations : dict
            ``single`` [*, N, C_s] and ``pair`` [*, N, N, C_z]; the module computes in float32 whatever
            their dtype (AlphaFold runs it outside its bfloat16 context).
        batch : dict
            ``aatype`` [*, N] and ``seq_mask`` [*, N].

        Returns
        -------
        dict
            AlphaFold's outputs, per iteration stacked on a leading dimension of size ``num_layer``:

            * ``act`` [*, N, C]: the final single representation (AlphaFold's
              ``representations['structure_module']``, read by the confidence heads);
            * ``traj`` [num_layer, *, N, 7]: backbone frames as quaternion and translation (Angstrom);
            * ``sidechains``: ``angles_sin_cos``, ``unnormalized_angles_sin_cos`` [num_layer, *, N, 7, 2],
              ``atom_pos`` [num_layer, *, N, 14, 3], ``frames`` [num_layer, *, N, 8, 4, 4];
            * ``final_affines`` [*, N, 7], ``final_atom14_positions`` [*, N, 14, 3],
              ``final_atom14_mask`` [*, N, 14], ``final_atom_positions`` [*, N, 37, 3],
              ``final_atom_mask`` [*, N, 37].
        """
        aatype, mask = batch["aatype"], batch["seq_mask"]
        scale = self.config.position_scale
        initial_act = self.single_layer_norm(representations["single"].float())  # line 1
        act = self.initial_projection(initial_act)  # line 3
        pair = self.pair_layer_norm(representations["pair"].float())  # line 2
        quaternion = torch.zeros(*act.shape[:-1], 4, device=act.device)  # line 4: identity frames
        quaternion[..., 0] = 1.0
        translation = torch.zeros(*act.shape[:-1], 3, device=act.device)

        traj, sidechains = [], []
        for _ in range(self.config.num_layer):  # line 5
            act, quaternion, translation, sidechain = self.fold_iteration(
                act, quaternion, translation, initial_act, pair, mask, aatype)
            traj.append(torch.cat([quaternion, translation * scale], dim=-1))
            sidechain["frames"] = sidechain["frames"].to_tensor_4x4()
            sidechains.append(sidechain)
            quaternion = quaternion.detach()  # line 20: no gradient through rotations between iterations

        traj = torch.stack(traj)
        sidechains = {key: torch.stack([s[key] for s in sidechains]) for key in sidechains[0]}
        atom14 = sidechains["atom_pos"][-1]
        return {
            "act": act,
            "traj": traj,
            "sidechains": sidechains,
            "final_affines": traj[-1],
            "final_atom14_positions": atom14,
            "final_atom14_mask": all_atom.atom14_mask(aatype),
            "final_atom_positions": all_atom.atom14_to_atom37(atom14, aatype),
            "final_atom_mask": all_atom.atom37_mask(aatype),
        }
