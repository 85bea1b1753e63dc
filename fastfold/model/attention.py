"""Gated multi-head attention and the Evoformer's attention modules.

:class:`Attention` (the attention lines of Algorithm 7) takes a list of additive biases and a key
mask and serves MSA row attention with pair bias, MSA column attention, triangle attention and
template pointwise attention; :class:`GlobalAttention` is Algorithm 19's cheap column attention for
the extra MSA. Both call :func:`fastfold.kernels.attention`. Parameter names and shapes are
AlphaFold's (``query_w`` [C_q, H, c], ``output_w`` [H, c_v, C_out], ...).
"""

import math
from collections.abc import Sequence

import torch
from torch import nn

from fastfold import kernels
from fastfold.kernels.operands import converted
from fastfold.model.chunking import apply_in_chunks, inference_chunk_size
from fastfold.model.layout import AxialLayout
from fastfold.model.primitives import LayerNorm, affine, glorot_uniform_, scaled


def _project_heads(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """x [*, N, C] with weights [C, H, c] -> [*, H, N, c]."""
    flat = x @ converted(weights.flatten(1), x.dtype)  # [*, N, H * c]
    return flat.unflatten(-1, weights.shape[1:]).transpose(-2, -3)


def _head_sizes(config, q_dim: int, m_dim: int) -> tuple:
    """(heads, per-head key size, per-head value size) from AlphaFold's attention config."""
    num_head = config.num_head
    key_dim = config.get("key_dim", q_dim)
    value_dim = config.get("value_dim", m_dim)
    if key_dim % num_head or value_dim % num_head:
        raise ValueError(f"key_dim {key_dim} and value_dim {value_dim} must divide by num_head {num_head}")
    return num_head, key_dim // num_head, value_dim // num_head


def _output_weights(global_config, num_head: int, value_dim: int, output_dim: int) -> nn.Parameter:
    """``output_w`` [H, c_v, C_out]: zeros with ``global_config.zero_init``, else Glorot-uniform."""
    output_w = torch.zeros(num_head, value_dim, output_dim)
    return nn.Parameter(output_w if global_config.zero_init else glorot_uniform_(output_w))


def _pair_bias_weights(pair_dim: int, num_head: int) -> nn.Parameter:
    """``feat_2d_weights`` [C_z, H], normal with standard deviation ``C_z ** -0.5`` as AlphaFold."""
    return nn.Parameter(torch.randn(pair_dim, num_head) / math.sqrt(pair_dim))


class Attention(nn.Module):
    """Gated multi-head attention, Algorithm 7 lines 2-7 (shared by Algorithms 8, 13, 14, 17).

    ``q = q_data W_q``, ``k = m_data W_k``, ``v = m_data W_v`` per head; weights
    ``softmax(q k^T / sqrt(c) + biases)`` over the unmasked keys; the average of ``v`` is gated by
    ``sigmoid(q_data W_g + b_g)`` when ``config.gating``, then projected to ``output_dim``.

    Parameters
    ----------
    config : ConfigDict
        ``num_head``, ``gating``, optional ``key_dim``/``value_dim`` (totals over heads; default
        ``q_dim``/``m_dim``).
    global_config : ConfigDict
        ``zero_init`` selects the initialiser of ``output_w``.
    q_dim, m_dim, output_dim : int
        Channels of the query input, of the key/value input and of the output.
    """

    def __init__(self, config, global_config, q_dim: int, m_dim: int, output_dim: int):
        super().__init__()
        num_head, key_dim, value_dim = _head_sizes(config, q_dim, m_dim)
        self.query_w = nn.Parameter(glorot_uniform_(torch.empty(q_dim, num_head, key_dim)))
        self.key_w = nn.Parameter(glorot_uniform_(torch.empty(m_dim, num_head, key_dim)))
        self.value_w = nn.Parameter(glorot_uniform_(torch.empty(m_dim, num_head, value_dim)))
        # Gate logits start at 1 (sigmoid 0.73) for every input: zero weights, unit bias.
        self.gating_w = nn.Parameter(torch.zeros(q_dim, num_head, value_dim)) if config.gating else None
        self.gating_b = nn.Parameter(torch.ones(num_head, value_dim)) if config.gating else None
        self.output_w = _output_weights(global_config, num_head, value_dim, output_dim)
        self.output_b = nn.Parameter(torch.zeros(output_dim))

    def forward(self, q_data: torch.Tensor, m_data: torch.Tensor, biases: Sequence[torch.Tensor] = (),
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``q_data`` to ``m_data``.

        Parameters
        ----------
        q_data : torch.Tensor
            ``[*, Q, C_q]``.
        m_data : torch.Tensor
            ``[*, K, C_m]``.
        biases : sequence of torch.Tensor
            Additive logit biases, each broadcastable to ``[*, H, Q, K]``.
        mask : torch.Tensor, optional
            Boolean, broadcastable to ``[*, H, Q, K]``; False excludes a key.

        Returns
        -------
        torch.Tensor
            ``[*, Q, output_dim]``.
        """
        q = _project_heads(q_data, self.query_w)  # [*, H, Q, c]
        k = _project_heads(m_data, self.key_w)  # [*, H, K, c]
        v = _project_heads(m_data, self.value_w)  # [*, H, K, c_v]
        gate = None
        if self.gating_w is not None:
            gate = _project_heads(q_data, self.gating_w) + converted(self.gating_b[:, None, :], q_data.dtype)
        out = kernels.attention(q, k, v, biases=biases, mask=mask, gate=gate)  # [*, H, Q, c_v]
        out = out.transpose(-2, -3).flatten(-2)  # [*, Q, H * c_v]
        return affine(out, self.output_w.flatten(0, 1), self.output_b)


class GlobalAttention(nn.Module):
    """Global gated attention, Algorithm 19 lines 2-7.

    One query per head from the masked mean of the queries; the keys and values have a single
    head shared by all heads; each position gates the shared average with its own
    ``sigmoid(q_data W_g + b_g)``.

    Parameters
    ----------
    config : ConfigDict
        ``num_head``, ``gating``, optional ``key_dim``/``value_dim``.
    global_config : ConfigDict
        ``zero_init`` selects the initialiser of ``output_w``.
    q_dim, m_dim, output_dim : int
        Channels of the query input, of the key/value input and of the output.
    """

    def __init__(self, config, global_config, q_dim: int, m_dim: int, output_dim: int):
        super().__init__()
        num_head, key_dim, value_dim = _head_sizes(config, q_dim, m_dim)
        self.query_w = nn.Parameter(glorot_uniform_(torch.empty(q_dim, num_head, key_dim)))
        self.key_w = nn.Parameter(glorot_uniform_(torch.empty(m_dim, key_dim)))
        self.value_w = nn.Parameter(glorot_uniform_(torch.empty(m_dim, value_dim)))
        self.gating_w = nn.Parameter(torch.zeros(q_dim, num_head, value_dim)) if config.gating else None
        self.gating_b = nn.Parameter(torch.ones(num_head, value_dim)) if config.gating else None
        self.output_w = _output_weights(global_config, num_head, value_dim, output_dim)
        self.output_b = nn.Parameter(torch.zeros(output_dim))

    def forward(self, q_data: torch.Tensor, m_data: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Global attention over the N positions of each batch element.

        Parameters
        ----------
        q_data : torch.Tensor
            ``[*, N, C_q]``.
        m_data : torch.Tensor
            ``[*, N, C_m]``.
        mask : torch.Tensor
            ``[*, N]``, 1 for real positions: weights the query mean and excludes masked keys.

        Returns
        -------
        torch.Tensor
            ``[*, N, output_dim]`` with gating, ``[*, 1, output_dim]`` without.
        """
        mask = mask.to(q_data.dtype)
        q_mean = (mask[..., None] * q_data).sum(dim=-2) / (mask.sum(dim=-1, keepdim=True) + 1e-10)  # [*, C_q]
        q = _project_heads(q_mean[..., None, :], self.query_w)  # [*, H, 1, c]
        k = (m_data @ converted(self.key_w, m_data.dtype))[..., None, :, :]  # [*, 1, N, c]
        v = (m_data @ converted(self.value_w, m_data.dtype))[..., None, :, :]  # [*, 1, N, c_v]
        key_mask = mask.bool()[..., None, None, :]  # [*, 1, 1, N]
        average = kernels.attention(q, k, v, mask=key_mask).squeeze(-2)  # [*, H, c_v]
        output_w = self.output_w.flatten(0, 1)
        if self.gating_w is None:
            return affine(average.flatten(-2), output_w, self.output_b)[..., None, :]
        gate = torch.einsum("...nc,chv->...nhv", q_data, converted(self.gating_w, q_data.dtype))
        gate = torch.sigmoid(gate + converted(self.gating_b, gate.dtype))
        gated = average[..., None, :, :] * gate  # [*, N, H, c_v]
        return affine(gated.flatten(-2), output_w, self.output_b)


class MSARowAttentionWithPairBias(nn.Module):
    """MSA row-wise gated self-attention with pair bias, Algorithm 7.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``msa_row_attention_with_pair_bias`` node (``num_head``, ``gating``, ...).
    global_config : ConfigDict
        ``subbatch_size`` (rows per chunk at inference) and ``zero_init``.
    msa_dim, pair_dim : int
        C_m and C_z.
    """

    def __init__(self, config, global_config, msa_dim: int, pair_dim: int):
        super().__init__()
        self.config = config
        self.global_config = global_config
        self.query_norm = LayerNorm(msa_dim)
        self.feat_2d_norm = LayerNorm(pair_dim)
        self.feat_2d_weights = _pair_bias_weights(pair_dim, config.num_head)
        self.attention = Attention(config, global_config, msa_dim, msa_dim, msa_dim)
        self.layout = AxialLayout()

    def forward(self, msa: torch.Tensor, msa_mask: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """msa [*, N_seq, N_res, C_m], msa_mask [*, N_seq, N_res], pair [*, N_res, N_res, C_z]
        -> update [*, N_seq, N_res, C_m].

        Under DAP msa and pair are row slices ``[*, N_seq / n, N_res, C_m]``, ``[*, N_res / n, N_res,
        C_z]`` and the mask is whole; the pair bias of the local pair rows is gathered while the MSA
        is normalised.
        """
        pair = self.feat_2d_norm(pair)
        pair_bias = torch.einsum("...qkc,ch->...hqk", pair, converted(self.feat_2d_weights, pair.dtype))
        pending = self.layout.start_gather(pair_bias, -2)  # [*, H, N_res / n, N_res]
        msa = self.query_norm(msa)
        key_mask = self.layout.shard(msa_mask, -2).bool()[..., :, None, None, :]  # [*, N_seq, 1, 1, N]
        pair_bias = self.layout.wait(pending).unsqueeze(-4)  # [*, 1, H, N_res, N_res]
        return apply_in_chunks(
            lambda x, m: self.attention(x, x, [pair_bias], m), [msa, key_mask], dims=[-3, -4],
            chunk_size=inference_chunk_size(self.global_config, self.training))


def _column_update_moved(module: nn.Module, msa: torch.Tensor, msa_mask: torch.Tensor,
                         scale: torch.Tensor | None) -> torch.Tensor:
    """``msa`` plus the column update ``module._attend`` (times the dropout factor ``scale``), moved from
    the row slices of DAP to its column slices in pieces of whole columns, each attended as it arrives
    while the next one flies (``layout.residual_rows_to_columns``).

    msa ``[*, N_seq / n, N_res, C]`` (whole without DAP), msa_mask whole ``[*, N_seq, N_res]``, scale
    broadcastable to the result -> ``[*, N_seq, N_res / n, C]``.
    """
    layout = module.layout

    def update(piece: torch.Tensor, piece_mask: torch.Tensor, piece_scale) -> torch.Tensor:
        return scaled(module._attend(piece, piece_mask), piece_scale)

    return layout.residual_rows_to_columns(update, msa, [layout.shard(msa_mask, -1), scale], [-1, -2])


class MSAColumnAttention(nn.Module):
    """MSA column-wise gated self-attention, Algorithm 8.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``msa_column_attention`` node.
    global_config : ConfigDict
        ``subbatch_size`` (columns per chunk at inference) and ``zero_init``.
    msa_dim : int
        C_m.
    """

    def __init__(self, config, global_config, msa_dim: int):
        super().__init__()
        self.config = config
        self.global_config = global_config
        self.query_norm = LayerNorm(msa_dim)
        self.attention = Attention(config, global_config, msa_dim, msa_dim, msa_dim)
        self.layout = AxialLayout()

    def forward(self, msa: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        """msa [*, N_seq, N_res, C_m], msa_mask [*, N_seq, N_res] -> update [*, N_seq, N_res, C_m].

        Under DAP msa is a column slice ``[*, N_seq, N_res / n, C_m]`` and the mask is whole.
        """
        return self._attend(msa, self.layout.shard(msa_mask, -1))

    def forward_moving(self, msa: torch.Tensor, msa_mask: torch.Tensor,
                       scale: torch.Tensor | None = None) -> torch.Tensor:
        """The MSA plus its update (times the dropout factor ``scale``), moved under DAP from row slices
        ``[*, N_seq / n, N_res, C_m]`` to the column slices :meth:`forward` takes, in pieces attended as they
        arrive (see :func:`_column_update_moved`); without DAP ``msa + scale * forward(msa, msa_mask)``."""
        return _column_update_moved(self, msa, msa_mask, scale)

    def _attend(self, msa: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        """msa [*, N_seq, R, C_m] with all its rows, msa_mask [*, N_seq, R] of the same columns -> update."""
        columns = self.query_norm(msa.transpose(-2, -3))  # [*, R, N_seq, C_m]
        key_mask = msa_mask.transpose(-1, -2).bool()[..., :, None, None, :]  # [*, R, 1, 1, N_seq]
        update = apply_in_chunks(
            lambda x, m: self.attention(x, x, mask=m), [columns, key_mask], dims=[-3, -4],
            chunk_size=inference_chunk_size(self.global_config, self.training))
        return update.transpose(-2, -3)


class MSAColumnGlobalAttention(nn.Module):
    """MSA column-wise global attention of the extra MSA stack, Algorithm 19.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``msa_column_attention`` node of the extra MSA stack.
    global_config : ConfigDict
        ``subbatch_size`` (columns per chunk at inference) and ``zero_init``.
    msa_dim : int
        C_e, the extra MSA channels.
    """

    def __init__(self, config, global_config, msa_dim: int):
        super().__init__()
        self.config = config
        self.global_config = global_config
        self.query_norm = LayerNorm(msa_dim)
        self.attention = GlobalAttention(config, global_config, msa_dim, msa_dim, msa_dim)
        self.layout = AxialLayout()

    def forward(self, msa: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        """msa [*, N_seq, N_res, C_e], msa_mask [*, N_seq, N_res] -> update [*, N_seq, N_res, C_e].

        Under DAP msa is a column slice ``[*, N_seq, N_res / n, C_e]`` and the mask is whole.
        """
        return self._attend(msa, self.layout.shard(msa_mask, -1))

    def forward_moving(self, msa: torch.Tensor, msa_mask: torch.Tensor,
                       scale: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`MSAColumnAttention.forward_moving`."""
        return _column_update_moved(self, msa, msa_mask, scale)

    def _attend(self, msa: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        """msa [*, N_seq, R, C_e] with all its rows, msa_mask [*, N_seq, R] of the same columns -> update."""
        columns = self.query_norm(msa.transpose(-2, -3))  # [*, R, N_seq, C_e]
        column_mask = msa_mask.transpose(-1, -2)  # [*, R, N_seq]
        update = apply_in_chunks(
            lambda x, m: self.attention(x, x, m), [columns, column_mask], dims=[-3, -2],
            chunk_size=inference_chunk_size(self.global_config, self.training))
        return update.transpose(-2, -3)


class TriangleAttention(nn.Module):
    """Triangle self-attention around the starting node (Algorithm 13) or the ending node (Algorithm 14).

    ``config.orientation`` ``per_row`` attends along rows ``(i, *)`` with bias ``b_jk``
    (starting node); ``per_column`` does the same on the transposed pair (ending node).

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``triangle_attention_starting_node`` / ``_ending_node`` node.
    global_config : ConfigDict
        ``subbatch_size`` (rows per chunk at inference) and ``zero_init``.
    pair_dim : int
        C_z.
    """

    def __init__(self, config, global_config, pair_dim: int):
        super().__init__()
        if config.orientation not in ("per_row", "per_column"):
            raise ValueError(f"triangle attention orientation {config.orientation!r}: "
                             "expected per_row or per_column")
        self.config = config
        self.global_config = global_config
        self.query_norm = LayerNorm(pair_dim)
        self.feat_2d_weights = _pair_bias_weights(pair_dim, config.num_head)
        self.attention = Attention(config, global_config, pair_dim, pair_dim, pair_dim)
        self.layout = AxialLayout()

    def forward(self, pair: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        """pair [*, N_res, N_res, C_z], pair_mask [*, N_res, N_res] -> update [*, N_res, N_res, C_z].

        Under DAP the pair is a row slice ``[*, N_res / n, N_res, C_z]`` around the starting node and
        a column slice ``[*, N_res, N_res / n, C_z]`` around the ending node; the mask is whole. The
        triangle bias of the local slice is gathered.
        """
        normed = self._normed(pair)  # [*, N_res / n, N_res, C_z], ending node: transposed
        pending = self.layout.start_gather(self._bias(normed), -2)  # [*, H, N_res / n, N_res]
        mask = self._mask(pair_mask)
        return self._orient(self._attend(normed, mask, self.layout.wait(pending)))

    def forward_moving(self, pair: torch.Tensor, pair_mask: torch.Tensor,
                       scale: torch.Tensor | None = None) -> torch.Tensor:
        """Around the ending node, the pair plus its update (times the dropout factor ``scale``), moved to the
        column slices that :meth:`forward` takes: [*, N_res, N_res, C_z] -> [*, N_res, N_res, C_z].

        Under DAP the pair comes as a row slice ``[*, N_res / n, N_res, C_z]`` and leaves as a column slice
        ``[*, N_res, N_res / n, C_z]``; the mask is whole, ``scale`` (from
        :func:`fastfold.model.primitives.dropout_scale`) is broadcastable to the result. The triangle bias
        is computed on the row slice (the LayerNorm and the projection are per position) and gathered; then
        the pair moves in pieces of whole columns, and the attention on each piece overlaps the all-to-all
        of the next (``layout.residual_rows_to_columns``). Without DAP: ``pair + scale * forward(pair,
        pair_mask)``.
        """
        if self.config.orientation != "per_column":
            raise ValueError("TriangleAttention.forward_moving serves the ending node (orientation "
                             f"per_column), not orientation {self.config.orientation!r}")
        if self.layout.num_shards == 1:  # nothing moves: the bias and the attention share one LayerNorm
            return pair + scaled(self.forward(pair, pair_mask), scale)
        pending = self.layout.start_gather(self._bias(self._normed(pair)), -1)  # [*, H, N_res, N_res / n]
        mask = self._mask(pair_mask)  # [*, N_res / n, N_res], a transposed view
        bias = self.layout.wait(pending)

        def update(piece: torch.Tensor, piece_mask: torch.Tensor, piece_scale) -> torch.Tensor:
            return scaled(self._orient(self._attend(self._normed(piece), piece_mask, bias)), piece_scale)

        return self.layout.residual_rows_to_columns(update, pair, [mask, scale], [-2, -2])

    def _orient(self, x: torch.Tensor) -> torch.Tensor:
        """[*, A, B, C] -> the attention's orientation (rows attend within themselves): as is around the
        starting node, [*, B, A, C] around the ending node. Its own inverse."""
        return x if self.config.orientation == "per_row" else x.transpose(-2, -3)

    def _normed(self, pair: torch.Tensor) -> torch.Tensor:
        """pair [*, A, B, C_z] -> the layer-normed pair in the attention's orientation."""
        return self.query_norm(self._orient(pair))

    def _bias(self, normed: torch.Tensor) -> torch.Tensor:
        """The triangle bias of a normed, oriented pair: [*, A, B, C_z] -> [*, H, A, B]."""
        return torch.einsum("...qkc,ch->...hqk", normed, converted(self.feat_2d_weights, normed.dtype))

    def _mask(self, pair_mask: torch.Tensor) -> torch.Tensor:
        """Whole pair_mask [*, N_res, N_res] -> the mask of the rows this process attends within, oriented:
        [*, N_res / n, N_res]."""
        return self.layout.shard(self._orient(pair_mask[..., None])[..., 0], -2)

    def _attend(self, normed: torch.Tensor, mask: torch.Tensor, triangle_bias: torch.Tensor) -> torch.Tensor:
        """Attention within each row of a normed, oriented pair, all of whose rows are present.

        normed [*, R, N_res, C_z], mask [*, R, N_res], triangle_bias [*, H, N_res, N_res] (whole) ->
        update [*, R, N_res, C_z].
        """
        key_mask = mask.bool()[..., :, None, None, :]  # [*, R, 1, 1, N_res]
        triangle_bias = triangle_bias.unsqueeze(-4)  # [*, 1, H, N_res, N_res]
        return apply_in_chunks(
            lambda x, m: self.attention(x, x, [triangle_bias], m), [normed, key_mask], dims=[-3, -4],
            chunk_size=inference_chunk_size(self.global_config, self.training))
