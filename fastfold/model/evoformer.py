"""The Evoformer block (Algorithm 6) and its non-attention modules.

Transition (Algorithms 9, 15), outer product mean (Algorithm 10), triangle multiplicative updates
(Algorithms 11, 12), :class:`EvoformerIteration` (one block, also the extra-MSA block of
Algorithm 18) and :class:`EvoformerStack`. Modules take AlphaFold's ``(config, global_config)``
nodes and keep its parameter names, so DeepMind's parameter files load unchanged.
"""

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from fastfold import kernels
from fastfold.kernels import converted, needs_grad
from fastfold.model.attention import (
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
    TriangleAttention,
)
from fastfold.model.chunking import apply_in_chunks, inference_chunk_size
from fastfold.model.layout import AxialLayout
from fastfold.model.primitives import (
    TRUNCATED_NORMAL_STDDEV_FACTOR,
    LayerNorm,
    Linear,
    affine,
    dropout_scale,
    final_init,
    scaled,
    shared_dropout,
)

# Added to the number of sequence pairs that the outer product mean averages over (AlphaFold's value).
OUTER_PRODUCT_MEAN_EPSILON = 1e-3


def call_with_remat(fn, *args, remat: bool):
    """``fn(*args)``; with ``remat``, recompute its activations in the backward pass instead of storing them.

    The random state is restored for the recomputation, so dropout masks, and hence the results and
    gradients, are the same with and without rematerialisation. The recomputation runs ``fn`` to its
    end (no early stop), so that every DAP collective it starts is also waited for, on every process.
    """
    if remat:
        return checkpoint(fn, *args, use_reentrant=False, early_stop=False)
    return fn(*args)


class Transition(nn.Module):
    """Two-layer ReLU MLP on each position: MSA transition (Algorithm 9), pair transition (Algorithm 15).

    As AlphaFold, the update is not masked.

    Parameters
    ----------
    config : ConfigDict
        ``num_intermediate_factor`` (n in the supplement).
    global_config : ConfigDict
        ``subbatch_size`` (rows per chunk at inference) and ``zero_init``.
    num_channels : int
        C, the channels of the input and output.
    """

    def __init__(self, config, global_config, num_channels: int):
        super().__init__()
        self.config = config
        self.global_config = global_config
        num_intermediate = int(num_channels * config.num_intermediate_factor)
        self.input_layer_norm = LayerNorm(num_channels)
        self.transition1 = Linear(num_channels, num_intermediate, initializer="relu")
        self.transition2 = Linear(num_intermediate, num_channels, initializer=final_init(global_config))

    def forward(self, act: torch.Tensor) -> torch.Tensor:
        """act [*, N_rows, N_cols, C] -> update [*, N_rows, N_cols, C]."""
        act = self.input_layer_norm(act)
        return apply_in_chunks(
            lambda x: self.transition2(self.transition1(x, relu=True)), [act], dims=[-3],
            chunk_size=inference_chunk_size(self.global_config, self.training))


class OuterProductMean(nn.Module):
    """Pair update from the mean over sequences of outer products of MSA columns, Algorithm 10.

    ``z_ij = (sum_s a_si (x) b_sj) W + b``, divided by ``1e-3 + sum_s mask_si mask_sj``. The outer
    products are formed ``config.chunk_size`` residues ``i`` at a time, in training too (as AlphaFold).

    Parameters
    ----------
    config : ConfigDict
        ``num_outer_channel`` (c) and ``chunk_size``.
    global_config : ConfigDict
        ``zero_init`` selects the initialiser of ``output_w``.
    msa_dim, pair_dim : int
        C_m and C_z.
    """

    def __init__(self, config, global_config, msa_dim: int, pair_dim: int):
        super().__init__()
        self.config = config
        num_outer = config.num_outer_channel
        self.layer_norm_input = LayerNorm(msa_dim)
        self.left_projection = Linear(msa_dim, num_outer)
        self.right_projection = Linear(msa_dim, num_outer)
        output_w = torch.zeros(num_outer, num_outer, pair_dim)
        if not global_config.zero_init:
            # He initialisation with fan-in c * c.
            std = math.sqrt(2.0 / (num_outer * num_outer)) / TRUNCATED_NORMAL_STDDEV_FACTOR
            nn.init.trunc_normal_(output_w, std=std, a=-2 * std, b=2 * std)
        self.output_w = nn.Parameter(output_w)
        self.output_b = nn.Parameter(torch.zeros(pair_dim))
        self.layout = AxialLayout()

    def _project_outer(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """left [*, N_seq, I, c], right [*, N_seq, N_res, c] -> [*, I, N_res, C_z] (before the mean)."""
        if needs_grad(left, right, self.output_w, self.output_b):
            outer = torch.einsum("...sic,...sje->...ijce", left, right)  # [*, I, N_res, c, c]
            return affine(outer.flatten(-2), self.output_w.flatten(0, 1), self.output_b)
        # Without autograd the outer products are formed (e, c)-major, [I, N_res * e, c], by one product
        # batched over i whose shared operand (right) has a stride-0 batch: the projection reads them as
        # they are, without the permuted copy of the [I, N_res, c, c] products that the einsum makes.
        s, n_i, c = left.shape[-3:]
        n_j, e = right.shape[-2:]
        weights = converted(self.output_w.transpose(0, 1), left.dtype).flatten(0, 1)  # [(e c), C_z], kept
        lefts, rights = left.reshape(-1, s, n_i, c), right.reshape(-1, s, n_j * e)
        updates = [affine(torch.bmm(rhs.t().expand(n_i, -1, -1), lhs.transpose(0, 1)).view(n_i, n_j, e * c),
                          weights, self.output_b)
                   for lhs, rhs in zip(lefts, rights, strict=True)]
        update = updates[0] if len(updates) == 1 else torch.stack(updates)
        return update.view(*left.shape[:-3], n_i, n_j, -1)

    def forward(self, msa: torch.Tensor, msa_mask: torch.Tensor) -> torch.Tensor:
        """msa [*, N_seq, N_res, C_m], msa_mask [*, N_seq, N_res] -> update [*, N_res, N_res, C_z].

        Under DAP msa is a column slice ``[*, N_seq, N_res / n, C_m]`` (the mask whole) and the update
        is a row slice ``[*, N_res / n, N_res, C_z]``: the right projection is gathered over residues
        while the left one is computed.
        """
        mask = self.layout.shard(msa_mask, -1).to(msa.dtype)[..., None]  # [*, N_seq, N_res, 1]
        msa = self.layer_norm_input(msa)
        right = mask * self.right_projection(msa)  # [*, N_seq, N_res, c]
        pending = self.layout.start_gather(right, -2)
        left = mask * self.left_projection(msa)
        right = self.layout.wait(pending)
        update = apply_in_chunks(lambda lhs: self._project_outer(lhs, right), [left], dims=[-2],
                                 chunk_size=self.config.chunk_size, out_dim=-3)
        norm = torch.einsum("...si,...sj->...ij", mask[..., 0], msa_mask.to(msa.dtype))  # [*, N, N]
        return update / (OUTER_PRODUCT_MEAN_EPSILON + norm[..., None])


class TriangleMultiplication(nn.Module):
    """Triangle multiplicative update, "outgoing" (Algorithm 11) or "incoming" (Algorithm 12) edges.

    DeepMind's unfused variant (separate ``left_projection``/``right_projection`` and gates). The
    edge combination is ``config.equation``: ``ikc,jkc->ijc`` (outgoing) or ``kjc,kic->ijc``
    (incoming), applied to the gated left and right projections. The maths lives in the three stages
    of :mod:`fastfold.kernels` (fused Triton kernels on a GPU, their PyTorch twins elsewhere).

    Parameters
    ----------
    config : ConfigDict
        ``num_intermediate_channel`` (c), ``equation``.
    global_config : ConfigDict
        ``zero_init`` selects the initialiser of the gates and the output projection.
    pair_dim : int
        C_z.
    """

    EQUATIONS = {"ikc,jkc->ijc": True, "kjc,kic->ijc": False}  # -> outgoing edges (Algorithm 11)

    def __init__(self, config, global_config, pair_dim: int):
        super().__init__()
        if config.get("fuse_projection_weights", False):
            raise ValueError("TriangleMultiplication: fuse_projection_weights=True (the layout of AlphaFold-"
                             "Multimer v2.3 parameters) is not a monomer setting; DeepMind's monomer "
                             "parameters need fuse_projection_weights=False")
        if config.equation not in self.EQUATIONS:
            raise ValueError(f"TriangleMultiplication: equation {config.equation!r}, expected one of "
                             f"{list(self.EQUATIONS)}")
        self.config = config
        self.outgoing = self.EQUATIONS[config.equation]
        self.layout = AxialLayout()
        num_intermediate = config.num_intermediate_channel
        gate_init = final_init(global_config)
        self.layer_norm_input = LayerNorm(pair_dim)
        self.left_projection = Linear(pair_dim, num_intermediate)
        self.right_projection = Linear(pair_dim, num_intermediate)
        self.left_gate = Linear(pair_dim, num_intermediate, initializer=gate_init, bias_init=1.0)
        self.right_gate = Linear(pair_dim, num_intermediate, initializer=gate_init, bias_init=1.0)
        self.center_layer_norm = LayerNorm(num_intermediate)
        self.output_projection = Linear(num_intermediate, pair_dim, initializer=gate_init)
        self.gating_linear = Linear(pair_dim, pair_dim, initializer=gate_init, bias_init=1.0)

    def forward(self, pair: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        """pair [*, N_res, N_res, C_z], pair_mask [*, N_res, N_res] -> update [*, N_res, N_res, C_z].

        Under DAP the pair and the update are row slices ``[*, N_res / n, N_res, C_z]`` for both edges; the
        mask is whole. Outgoing edges (``ikc,jkc->ijc``: the rows are the output's ``i``) gather ``right``
        while the product's block of this rank's own rows is formed; incoming edges (``kjc,kic->ijc``: the
        rows are the summed ``k``) form the sums over the local rows for every rank's output rows and
        exchange them (half the bytes of moving the pair to column slices, gathering and moving back),
        while the block of the own rows is formed. In DAP inference the projections that the
        communication needs come first, so that the others overlap it too.
        """
        linears = (self.left_projection, self.right_projection, self.left_gate, self.right_gate,
                   self.gating_linear)
        weights_in = kernels.TriangleProjectionWeights(
            self.layer_norm_input.scale, self.layer_norm_input.offset,
            *(t for linear in linears for t in (linear.weights, linear.bias)))
        weights_out = kernels.TriangleOutputWeights(
            self.center_layer_norm.scale, self.center_layer_norm.offset, self.output_projection.weights,
            self.output_projection.bias)
        mask = self.layout.shard(pair_mask, -2)
        names, first = ("left", "right", "gate"), ("right",) if self.outgoing else ("left", "right")
        if self.layout.num_shards > 1 and not torch.is_grad_enabled():  # lines 1-3, [*, ., ., c]
            projected = kernels.triangle_projection_parts(pair, mask, weights_in, first)
            parts = dict(zip(first, projected, strict=True))  # what the communication needs, first
            pending = self._start(parts)
            rest = tuple(name for name in names if name not in first)
            projected = kernels.triangle_projection_parts(pair, mask, weights_in, rest)
            parts.update(zip(rest, projected, strict=True))
        else:
            parts = dict(zip(names, kernels.triangle_projections(pair, mask, weights_in), strict=True))
            pending = self._start(parts)
        if self.outgoing:  # line 4
            product, received = self._gathered_product(parts["left"], parts["right"], pending), None
        else:
            product, received = self._summed_product(parts["left"], parts["right"], pending)
        return kernels.triangle_output(product, parts["gate"], weights_out, received)  # [*, N, N, C_z]

    def _start(self, parts: dict):
        """Start the communication of line 4's sum: gather ``right`` (outgoing) or send the partial sums
        (incoming)."""
        if self.outgoing:
            return self._start_gather(parts["right"])
        return self._start_sums(parts["left"], parts["right"])

    def _start_gather(self, right: torch.Tensor) -> list:
        """Start gathering ``right`` [*, ., ., c] in its channel-major memory order (the Triton stage 1's),
        one piece per rank, in ``layout.gather_groups`` groups of channels, each its own collective: the
        wait of group g gives ``[n, *, c_g, ., .]``."""
        groups = kernels.channel_groups(right.shape[-1], self.layout.gather_groups)
        return [self.layout.start_gather(group.unsqueeze(0), 0)
                for group in right.movedim(-1, -3).split(groups, -3)]

    def _gathered_product(self, left: torch.Tensor, right: torch.Tensor, pending: list) -> torch.Tensor:
        """Outgoing line 4's sum ``[*, N_i, N_j, c]`` from the local ``left``, ``right`` [*, ., ., c] and the
        gathers.

        The block of this rank's own slice overlaps the gathering; then the other ranks' blocks are
        formed channel group by channel group, each as soon as its group arrives (while the next flies).
        """
        own = self.layout.shard_index
        product = kernels.ProductBlocks(left, self.layout.num_shards, right.shape[-3], outgoing=True)
        product.add(own, right)
        start = 0
        for group in pending:
            pieces = self.layout.wait(group).unbind(0)  # n x [*, c_g, ., .]
            channels = slice(start, start + pieces[0].shape[-3])
            for rank, piece in enumerate(pieces):
                if rank != own:
                    product.add(rank, piece.movedim(-3, -1), channels)  # [*, ., ., c_g]
            start = channels.stop
        return product.result()

    def _start_sums(self, left: torch.Tensor, right: torch.Tensor):
        """Incoming edges: the sums over this rank's rows ``k`` for the other ranks' output rows, sent to
        them; None on one process.

        left ``[*, K / n, N_j, c]``, right ``[*, K / n, N_i, c]`` -> pending ``[n - 1, *, c, N_i / n, N_j]``.
        """
        n, own = self.layout.num_shards, self.layout.shard_index
        blocks = [kernels.triangle_product_block(left, piece, outgoing=False)
                  for rank, piece in enumerate(right.tensor_split(n, -2)) if rank != own]
        if not blocks:
            return None
        return self.layout.start_exchange(blocks[0].unsqueeze(0) if len(blocks) == 1 else torch.stack(blocks))

    def _summed_product(self, left: torch.Tensor, right: torch.Tensor, pending) -> tuple:
        """Incoming line 4's sum for this rank's rows ``i`` as two terms: the block of its own rows ``k``
        ``[*, N_i / n, N_j, c]`` (formed while the other ranks' sums arrive) and theirs, ``[n - 1, *, N_i / n,
        N_j, c]`` (None on one process), which stage 3 adds as it reads the block."""
        n, own = self.layout.num_shards, self.layout.shard_index
        product = kernels.triangle_product_block(left, right.tensor_split(n, -2)[own], outgoing=False)
        received = None if pending is None else self.layout.wait(pending).movedim(-3, -1)
        return product.movedim(-3, -1), received


def add_residual(block: nn.Module, act: torch.Tensor, update: torch.Tensor, module: nn.Module,
                 sharded_dim: int) -> torch.Tensor:
    """``act`` plus ``module``'s ``update`` through the module's dropout, in ``block`` (an Evoformer or
    template pair block: its ``global_config``, ``training`` and ``layout``); ``sharded_dim`` is the DAP
    slicing of both (-3 rows, -2 columns)."""
    return act + shared_dropout(update, module.config, block.global_config, block.training, block.layout,
                                sharded_dim)


def moved_dropout_scale(block: nn.Module, module: nn.Module, act: torch.Tensor, to_columns: bool):
    """The dropout factor (:func:`~fastfold.model.primitives.dropout_scale`) of ``module``'s residual update
    of ``block``'s ``act`` once it has moved under DAP, to column slices (``to_columns``) or to row slices.

    act row-sharded ``[*, A / n, B, C]`` (column-sharded ``[*, A, B / n, C]``) -> a factor broadcastable to
    ``[*, A, B / n, C]`` (``[*, A / n, B, C]``), or None without dropout.
    """
    whole, sliced = (-3, -2) if to_columns else (-2, -3)
    shape = list(act.shape)
    shape[whole] *= block.layout.num_shards
    shape[sliced] //= block.layout.num_shards
    return dropout_scale(act, shape, module.config, block.global_config, block.training, block.layout, sliced)


def add_pair_update_modules(block: nn.Module, config, global_config, pair_dim: int) -> None:
    """Give ``block`` the pair-update modules of an Evoformer or template pair block, under haiku's names.

    ``triangle_multiplication_outgoing`` / ``_incoming`` (Algorithms 11, 12),
    ``triangle_attention_starting_node`` / ``_ending_node`` (Algorithms 13, 14) and ``pair_transition``
    (Algorithm 15), each built from the ``config`` node of the same name, acting on C_z = ``pair_dim``.
    """
    for name in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
        setattr(block, name, TriangleMultiplication(config[name], global_config, pair_dim))
    for name in ("triangle_attention_starting_node", "triangle_attention_ending_node"):
        setattr(block, name, TriangleAttention(config[name], global_config, pair_dim))
    block.pair_transition = Transition(config.pair_transition, global_config, pair_dim)


class EvoformerIteration(nn.Module):
    """One Evoformer block, Algorithm 6 lines 2-10, in AlphaFold's order of operations.

    With ``is_extra_msa`` it is the extra-MSA block of Algorithm 18, whose column attention is
    global (Algorithm 19). With ``config.outer_product_mean.first`` (AlphaFold-Multimer) the outer
    product mean runs before the MSA updates. Each update goes through AlphaFold's shared dropout
    (:func:`fastfold.model.primitives.shared_dropout`) before it is added.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``evoformer`` node: one child node per module.
    global_config : ConfigDict
        AlphaFold's ``global_config``.
    msa_dim, pair_dim : int
        C_m (or C_e for the extra MSA) and C_z.
    is_extra_msa : bool
        Global column attention (named ``msa_column_global_attention``) instead of the gated one.
    """

    def __init__(self, config, global_config, msa_dim: int, pair_dim: int, is_extra_msa: bool = False):
        super().__init__()
        self.config = config
        self.global_config = global_config
        self.is_extra_msa = is_extra_msa
        self.outer_product_mean = OuterProductMean(
            config.outer_product_mean, global_config, msa_dim, pair_dim)
        self.msa_row_attention_with_pair_bias = MSARowAttentionWithPairBias(
            config.msa_row_attention_with_pair_bias, global_config, msa_dim, pair_dim)
        if is_extra_msa:
            self.msa_column_global_attention = MSAColumnGlobalAttention(
                config.msa_column_attention, global_config, msa_dim)
        else:
            self.msa_column_attention = MSAColumnAttention(
                config.msa_column_attention, global_config, msa_dim)
        self.msa_transition = Transition(config.msa_transition, global_config, msa_dim)
        add_pair_update_modules(self, config, global_config, pair_dim)
        self.layout = AxialLayout()

    _add = add_residual

    def forward(self, msa: torch.Tensor, pair: torch.Tensor, msa_mask: torch.Tensor,
                pair_mask: torch.Tensor) -> tuple:
        """One block.

        Parameters
        ----------
        msa : torch.Tensor
            ``[*, N_seq, N_res, C_m]``.
        pair : torch.Tensor
            ``[*, N_res, N_res, C_z]``.
        msa_mask : torch.Tensor
            ``[*, N_seq, N_res]``, 1 for real entries.
        pair_mask : torch.Tensor
            ``[*, N_res, N_res]``.

        Returns
        -------
        tuple of torch.Tensor
            Updated ``(msa, pair)``, same shapes.

        Notes
        -----
        Under DAP (``self.layout``, see :mod:`fastfold.model.layout`) msa and pair come and go as row
        slices ``[*, N_seq / n, N_res, C_m]`` and ``[*, N_res / n, N_res, C_z]`` with whole masks. Each
        module runs on the slices that its attention or contraction does not cross (except the incoming
        triangle update, which sums over its row slices and exchanges the partial sums): the MSA moves to
        column slices for the column attention (in pieces attended as they arrive), the transition and the
        outer product mean, and back while the pair updates run; the pair stays in row slices except
        around the ending-node attention and the transition after it (moved there and back in pieces that
        overlap the attention and the transition).
        """
        layout, rows, columns = self.layout, -3, -2
        outer = self.outer_product_mean
        if self.config.outer_product_mean.first:
            pair = self._add(pair, outer(layout.rows_to_columns(msa), msa_mask), outer, rows)
        row_attention = self.msa_row_attention_with_pair_bias
        msa = self._add(msa, row_attention(msa, msa_mask, pair), row_attention, rows)  # line 2
        column_attention = (self.msa_column_global_attention if self.is_extra_msa
                            else self.msa_column_attention)
        scale = moved_dropout_scale(self, column_attention, msa, to_columns=True)
        msa = column_attention.forward_moving(msa, msa_mask, scale)  # line 3, to [*, N_seq, N_res / n, C_m]
        msa = self._add(msa, self.msa_transition(msa), self.msa_transition, columns)  # line 4
        if not self.config.outer_product_mean.first:
            pair = self._add(pair, outer(msa, msa_mask), outer, rows)  # line 5
        msa_pending = layout.start_columns_to_rows(msa)  # overlaps the pair updates
        pair = self._add(pair, self.triangle_multiplication_outgoing(pair, pair_mask),
                         self.triangle_multiplication_outgoing, rows)  # line 6
        pair = self._add(pair, self.triangle_multiplication_incoming(pair, pair_mask),
                         self.triangle_multiplication_incoming, rows)  # line 7
        starting, ending = self.triangle_attention_starting_node, self.triangle_attention_ending_node
        pair = self._add(pair, starting(pair, pair_mask), starting, rows)  # line 8
        scale = moved_dropout_scale(self, ending, pair, to_columns=True)
        pair = ending.forward_moving(pair, pair_mask, scale)  # line 9, to [*, N_res, N_res / n, C_z]
        transition = self.pair_transition
        pair = layout.residual_columns_to_rows(  # line 10, to [*, N_res / n, N_res, C_z]
            lambda piece, scale: scaled(transition(piece), scale), pair,
            [moved_dropout_scale(self, transition, pair, to_columns=False)], [rows], pointwise=True)
        return layout.wait(msa_pending), pair


class EvoformerStack(nn.Module):
    """The Evoformer stack, Algorithm 6: ``config.evoformer_num_block`` blocks.

    The blocks are the ModuleList ``evoformer_iteration`` (haiku's layer stack of that name); the
    stack itself adds no level to the parameter path (``haiku_name_scope = False``). In training
    with ``global_config.use_remat`` each block's activations are recomputed in the backward pass.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``embeddings_and_evoformer`` node (``evoformer``, ``evoformer_num_block``,
        ``msa_channel``, ``pair_channel``).
    global_config : ConfigDict
        AlphaFold's ``global_config``.
    """

    haiku_name_scope = False

    def __init__(self, config, global_config):
        super().__init__()
        self.global_config = global_config
        self.evoformer_iteration = nn.ModuleList(
            EvoformerIteration(config.evoformer, global_config, config.msa_channel, config.pair_channel)
            for _ in range(config.evoformer_num_block))
        self.layout = AxialLayout()

    def forward(self, msa: torch.Tensor, pair: torch.Tensor, msa_mask: torch.Tensor,
                pair_mask: torch.Tensor) -> tuple:
        """msa [*, N_seq, N_res, C_m], pair [*, N_res, N_res, C_z], msa_mask [*, N_seq, N_res],
        pair_mask [*, N_res, N_res] -> (msa, pair), same shapes.

        Under DAP the whole inputs are padded and sliced on entry and the whole outputs gathered on exit.
        """
        remat = self.training and self.global_config.use_remat
        return run_axial_stack(self.evoformer_iteration, self.layout, msa, pair, msa_mask, pair_mask, remat)


def run_axial_stack(blocks, layout: AxialLayout, msa: torch.Tensor, pair: torch.Tensor,
                    msa_mask: torch.Tensor, pair_mask: torch.Tensor, remat: bool,
                    gather_msa: bool = True) -> tuple:
    """Run Evoformer-style ``blocks`` in order, sharded by ``layout`` between entry and exit.

    msa [*, N_seq, N_res, C_m], pair [*, N_res, N_res, C_z], msa_mask [*, N_seq, N_res], pair_mask
    [*, N_res, N_res] -> (msa or None when not ``gather_msa``, pair), whole shapes. Under DAP the inputs
    are padded and sliced on entry (MSA [*, N_seq / n, N_res, C_m], pair [*, N_res / n, N_res, C_z];
    masks stay whole) and gathered on exit; with ``remat`` each block is recomputed in the backward pass.
    """
    num_seq, num_res = msa.shape[-3:-1]
    msa, msa_mask = layout.enter(msa, msa_mask)
    pair, pair_mask = layout.enter(pair, pair_mask)
    for block in blocks:
        msa, pair = call_with_remat(block, msa, pair, msa_mask, pair_mask, remat=remat)
    pair = layout.leave(pair, num_res, num_res)
    return (layout.leave(msa, num_seq, num_res) if gather_msa else None), pair
