"""Output heads (supplement section 1.9) and the confidence metrics computed from their logits.

Each head reads the representations dict (``"msa"``, ``"pair"``, ``"single"``, ``"structure_module"``)
and returns a dict with AlphaFold's output names; each final layer is initialised by ``final_init``.
"""

import torch
from torch import nn

from fastfold.model.primitives import LayerNorm, Linear, final_init

# pTM clips the number of residues from below so that TM-score's d0 stays positive.
MIN_TM_SCORE_RESIDUES = 19


class DistogramHead(nn.Module):
    """Section 1.9.8: distogram logits from the symmetrised pair representation (``half_logits``).

    pair [*, N_res, N_res, C_z] -> ``logits`` [*, N_res, N_res, num_bins], ``bin_edges`` [num_bins - 1].
    """

    def __init__(self, config, global_config, pair_channel: int):
        super().__init__()
        self.config = config
        self.half_logits = Linear(pair_channel, config.num_bins, initializer=final_init(global_config))

    def forward(self, representations: dict) -> dict:
        half_logits = self.half_logits(representations["pair"])
        logits = half_logits + half_logits.transpose(-2, -3)
        bin_edges = torch.linspace(self.config.first_break, self.config.last_break, self.config.num_bins - 1,
                                   device=logits.device)
        return {"logits": logits, "bin_edges": bin_edges}


class MaskedMsaHead(nn.Module):
    """Section 1.9.9: per-position residue-type logits for masked MSA (BERT) prediction.

    msa [*, N_seq, N_res, C_m] -> ``logits`` [*, N_seq, N_res, num_output].
    """

    def __init__(self, config, global_config, msa_channel: int):
        super().__init__()
        self.logits = Linear(msa_channel, config.num_output, initializer=final_init(global_config))

    def forward(self, representations: dict) -> dict:
        return {"logits": self.logits(representations["msa"])}


class PredictedLDDTHead(nn.Module):
    """Algorithm 29: binned per-residue lDDT-Ca logits from the structure module's single output.

    structure_module [*, N_res, C_s] -> ``logits`` [*, N_res, num_bins].
    """

    def __init__(self, config, global_config, single_channel: int):
        super().__init__()
        self.input_layer_norm = LayerNorm(single_channel)
        self.act_0 = Linear(single_channel, config.num_channels, initializer="relu")
        self.act_1 = Linear(config.num_channels, config.num_channels, initializer="relu")
        self.logits = Linear(config.num_channels, config.num_bins, initializer=final_init(global_config))

    def forward(self, representations: dict) -> dict:
        act = self.input_layer_norm(representations["structure_module"])
        act = self.act_0(act, relu=True)
        act = self.act_1(act, relu=True)
        return {"logits": self.logits(act)}


class PredictedAlignedErrorHead(nn.Module):
    """Section 1.9.7: binned aligned-error logits from the pair representation (pTM models).

    pair [*, N_res, N_res, C_z] -> ``logits`` [*, N_res, N_res, num_bins], ``breaks`` [num_bins - 1]
    (uniform over [0, max_error_bin]; the last bin is open-ended).
    """

    def __init__(self, config, global_config, pair_channel: int):
        super().__init__()
        self.config = config
        self.logits = Linear(pair_channel, config.num_bins, initializer=final_init(global_config))

    def forward(self, representations: dict) -> dict:
        logits = self.logits(representations["pair"])
        breaks = torch.linspace(0.0, self.config.max_error_bin, self.config.num_bins - 1,
                                device=logits.device)
        return {"logits": logits, "breaks": breaks}


class ExperimentallyResolvedHead(nn.Module):
    """Section 1.9.10: per-atom (atom37) logits that an atom is experimentally resolved.

    single [*, N_res, C_s] -> ``logits`` [*, N_res, 37].
    """

    def __init__(self, config, global_config, single_channel: int):
        super().__init__()
        self.logits = Linear(single_channel, 37, initializer=final_init(global_config))

    def forward(self, representations: dict) -> dict:
        return {"logits": self.logits(representations["single"])}


def compute_plddt(logits: torch.Tensor) -> torch.Tensor:
    """Section 1.9.6: expected lDDT-Ca in [0, 100] under the predicted bins.

    logits [*, N_res, num_bins] -> [*, N_res].
    """
    num_bins = logits.shape[-1]
    bin_centers = (torch.arange(num_bins, device=logits.device, dtype=logits.dtype) + 0.5) / num_bins
    return 100.0 * (torch.softmax(logits, dim=-1) * bin_centers).sum(dim=-1)


def _error_bin_centers(breaks: torch.Tensor) -> torch.Tensor:
    """Centres of the aligned-error bins: mid-points of ``breaks`` [B - 1] plus one beyond -> [B]."""
    step = breaks[1] - breaks[0]
    centers = breaks + step / 2
    return torch.cat([centers, centers[-1:] + step])


def compute_predicted_aligned_error(logits: torch.Tensor, breaks: torch.Tensor) -> dict:
    """Section 1.9.7: expected aligned error of every residue pair.

    logits [*, N_res, N_res, num_bins], breaks [num_bins - 1] -> ``aligned_confidence_probs``
    [*, N_res, N_res, num_bins], ``predicted_aligned_error`` [*, N_res, N_res] (Angstrom),
    ``max_predicted_aligned_error`` (scalar: the centre of the last bin).
    """
    probs = torch.softmax(logits, dim=-1)
    centers = _error_bin_centers(breaks)
    return {
        "aligned_confidence_probs": probs,
        "predicted_aligned_error": (probs * centers).sum(dim=-1),
        "max_predicted_aligned_error": centers[-1],
    }


def predicted_tm_score(logits: torch.Tensor, breaks: torch.Tensor, residue_weights: torch.Tensor = None,
                       asym_id: torch.Tensor = None) -> torch.Tensor:
    """Section 1.9.7: predicted TM-score (pTM), or interface pTM when ``asym_id`` is given.

    The expected TM term of each pair under the predicted error bins, averaged over the weighted
    residues for every alignment frame; the best weighted frame is the score.

    logits [N_res, N_res, num_bins], breaks [num_bins - 1], residue_weights [N_res] in [0, 1]
    (default all ones), asym_id [N_res] (chain ids; only pairs across chains count) -> scalar.
    """
    num_res = logits.shape[-3]
    if residue_weights is None:
        residue_weights = logits.new_ones(num_res)
    residue_weights = residue_weights.to(logits.dtype)
    clipped_num_res = torch.clamp(residue_weights.sum(), min=MIN_TM_SCORE_RESIDUES)
    d0 = 1.24 * (clipped_num_res - 15) ** (1.0 / 3) - 1.8  # Yang & Skolnick (2004) eq. 5
    tm_per_bin = 1.0 / (1 + _error_bin_centers(breaks) ** 2 / d0 ** 2)  # [num_bins]
    predicted_tm_term = (torch.softmax(logits, dim=-1) * tm_per_bin).sum(dim=-1)  # [N_res, N_res]
    if asym_id is None:
        pair_mask = torch.ones_like(predicted_tm_term)
    else:
        pair_mask = (asym_id[:, None] != asym_id[None, :]).to(logits.dtype)
    predicted_tm_term = predicted_tm_term * pair_mask
    pair_weights = pair_mask * residue_weights[None, :] * residue_weights[:, None]
    normalised_weights = pair_weights / (1e-8 + pair_weights.sum(dim=-1, keepdim=True))
    per_alignment = (predicted_tm_term * normalised_weights).sum(dim=-1)  # [N_res]
    return (per_alignment * residue_weights).max()


def confidence_metrics(outputs: dict, seq_mask: torch.Tensor) -> dict:
    """AlphaFold's confidence metrics of one prediction.

    outputs: the model's output dict (``predicted_lddt`` and, for pTM models, ``predicted_aligned_error``
    head outputs); seq_mask [N_res]. Returns ``plddt`` [N_res], ``mean_plddt`` and
    ``ranking_confidence`` (mean pLDDT over ``seq_mask``, DeepMind's monomer ranking), and for pTM
    models ``pae`` [N_res, N_res] (AlphaFold's ``predicted_aligned_error`` matrix, renamed so that the
    head's own output keeps its name), ``aligned_confidence_probs``, ``max_predicted_aligned_error``
    and ``ptm``. Computed in float32 (the logits may be bfloat16 with ``global_config.bfloat16_output``).
    """
    plddt = compute_plddt(outputs["predicted_lddt"]["logits"].float())
    mask = seq_mask.to(plddt.dtype)
    mean_plddt = (plddt * mask).sum() / mask.sum()
    metrics = {"plddt": plddt, "mean_plddt": mean_plddt, "ranking_confidence": mean_plddt}
    if "predicted_aligned_error" in outputs:
        head = outputs["predicted_aligned_error"]
        logits = head["logits"].float()
        aligned_error = compute_predicted_aligned_error(logits, head["breaks"])
        metrics["pae"] = aligned_error.pop("predicted_aligned_error")
        metrics.update(aligned_error)
        metrics["ptm"] = predicted_tm_score(logits, head["breaks"], residue_weights=seq_mask)
    return metrics
