"""bfloat16 against float32 on the GPU, module by module, on the same random non-zero parameters.

With ``global_config.bfloat16`` the trunk (embedders, template, extra-MSA and Evoformer stacks)
stores activations in bfloat16 and multiplies in it, LayerNorm statistics and softmax run in float32,
and the structure module and heads run in float32 (AlphaFold's split). Each test runs one module in
float32 with the PyTorch kernels and TF32 off (the reference) and in bfloat16 with the kernels that
the environment selects (``FASTFOLD_KERNEL``, Triton by default on CUDA), and prints the errors.

Bounds. bfloat16 keeps 8 significant bits: storing a value rounds it by up to u = 2^-9 ~ 2e-3 of
itself. A product of rounded inputs, accumulated in float32, is off by about u of its result, and
every residual update adds another rounding of the stream; one Evoformer-style block makes about ten
updates, whose errors add as a random walk (sqrt(10) u ~ 6e-3 of the stream's typical size), and the
largest of ~10^5 elements is about four standard deviations out. So a block is held to 3e-2 of the
reference's largest value and a stack of blocks to 5e-2 (LayerNorm before each module keeps errors
from compounding). The structure module computes in float32 on bfloat16-rounded inputs: its error is
the effect of one rounding of its inputs (u), amplified by eight iterations of frame updates; atoms
within 0.5 A of structures tens of A across. The whole 48-block model with random parameters runs
about 600 updates: its representations, head logits and atoms are held to 0.1 of their largest value
(a random walk of 600 roundings of u is 5e-2). Random parameters give logits of size ~100, so the
confidence softmaxes are nearly one-hot and a small logit error can move a pair to a neighbouring
PAE bin: PAE is held by its mean error (1 A), pLDDT to 5 points and pTM to 0.05. These loose bounds
catch a float32 island gone missing (NaN, overflow, a bfloat16 softmax over thousands of keys or a
bfloat16 structure module break them); they do not measure a trained model's accuracy.
"""

import pytest
import torch
from model_inputs import as_torch, flat_parameters, random_module_parameters, randomise, real_features

from fastfold.config import model_config
from fastfold.model.alphafold import PARAMETER_PREFIX, AlphaFold
from fastfold.model.evoformer import EvoformerIteration
from fastfold.model.extra_msa import ExtraMsaStack
from fastfold.model.params import load_haiku_params
from fastfold.model.structure_module import StructureModule
from fastfold.model.template import TemplateEmbedding

pytestmark = pytest.mark.gpu
NUM_SEQ, NUM_EXTRA, NUM_RES = 32, 128, 64


@pytest.fixture(scope="module")
def device():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch.device("cuda")


@pytest.fixture(scope="module")
def config():
    return model_config("model_1_ptm").model


@pytest.fixture(autouse=True)
def exact_float32():
    """float32 matrix products in full precision (no TF32) for the reference."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(precision)


def run_both(fn, inputs: dict, monkeypatch) -> tuple:
    """fn(inputs in float32) with the PyTorch kernels, and fn(floating inputs in bfloat16)."""
    with torch.no_grad():
        with monkeypatch.context() as patch:
            patch.setenv("FASTFOLD_KERNEL", "torch")
            reference = fn(inputs)
        low = {key: value.bfloat16() if value.is_floating_point() else value for key, value in inputs.items()}
        return reference, fn(low)


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference|, in float32."""
    assert torch.isfinite(ours).all()
    return float((ours.float() - reference.float()).abs().max() / reference.float().abs().max())


def report(name: str, errors: dict) -> None:
    print(f"{name}: " + ", ".join(f"{key} {value:.2e}" for key, value in errors.items()))


def activations(device, channels: dict, seed: int) -> dict:
    """Unit normal activations and masks with a padding residue: ``msa`` [NUM_SEQ or NUM_EXTRA, N_res, C]."""
    generator = torch.Generator().manual_seed(seed)
    num_seq = NUM_EXTRA if channels["msa"] == 64 else NUM_SEQ
    msa_mask = (torch.rand(num_seq, NUM_RES, generator=generator) < 0.9).float()
    seq_mask = torch.ones(NUM_RES)
    seq_mask[-1] = 0.0
    out = {"msa": torch.randn(num_seq, NUM_RES, channels["msa"], generator=generator),
           "pair": torch.randn(NUM_RES, NUM_RES, channels["pair"], generator=generator),
           "msa_mask": msa_mask * seq_mask, "pair_mask": seq_mask[:, None] * seq_mask[None, :]}
    return {key: value.to(device) for key, value in out.items()}


def test_evoformer_block(device, config, monkeypatch):
    evoformer = config.embeddings_and_evoformer
    block = randomise(EvoformerIteration(evoformer.evoformer, config.global_config, evoformer.msa_channel,
                                         evoformer.pair_channel), seed=1).to(device).eval()
    inputs = activations(device, {"msa": evoformer.msa_channel, "pair": evoformer.pair_channel}, seed=2)
    reference, ours = run_both(lambda x: block(x["msa"], x["pair"], x["msa_mask"], x["pair_mask"]),
                               inputs, monkeypatch)
    errors = {name: relative_error(o, r) for name, o, r in zip(("msa", "pair"), ours, reference, strict=True)}
    report("Evoformer block", errors)
    assert all(o.dtype == torch.bfloat16 for o in ours)
    assert max(errors.values()) <= 3e-2


def test_extra_msa_stack(device, config, monkeypatch):
    evoformer = config.embeddings_and_evoformer
    stack = randomise(ExtraMsaStack(evoformer, config.global_config), seed=3).to(device).eval()
    inputs = activations(device, {"msa": evoformer.extra_msa_channel, "pair": evoformer.pair_channel}, seed=4)
    reference, ours = run_both(lambda x: stack(x["msa"], x["pair"], x["msa_mask"], x["pair_mask"]),
                               inputs, monkeypatch)
    errors = {"pair": relative_error(ours, reference)}
    report(f"extra-MSA stack ({evoformer.extra_msa_stack_num_block} blocks)", errors)
    assert ours.dtype == torch.bfloat16 and errors["pair"] <= 5e-2


def test_template_embedding(device, config, monkeypatch):
    """Template pair stack (2 blocks) and pointwise attention on a real template beside padding ones."""
    template_config = config.embeddings_and_evoformer.template
    pair_channel = config.embeddings_and_evoformer.pair_channel
    embedding = randomise(TemplateEmbedding(template_config, config.global_config, pair_channel),
                          seed=5).to(device).eval()
    features = real_features(model_config("model_1_ptm"), num_res=NUM_RES)
    templates = {key: torch.from_numpy(value[0]).to(device) for key, value in features.items()
                 if key.startswith("template_")}
    inputs = activations(device, {"msa": 1, "pair": pair_channel}, seed=6)

    def embed(x):
        # Geometry stays float32; the padding mask carries the activations' dtype.
        return embedding(x["pair"], templates, x["pair_mask"].to(x["pair"].dtype))

    reference, ours = run_both(embed, {"pair": inputs["pair"], "pair_mask": inputs["pair_mask"]}, monkeypatch)
    errors = {"pair update": relative_error(ours, reference)}
    report("template embedding", errors)
    assert ours.dtype == torch.bfloat16 and errors["pair update"] <= 5e-2


def test_structure_module_runs_in_float32(device, config, monkeypatch):
    """bfloat16 representations in (``bfloat16_output``), float32 maths and outputs."""
    evoformer = config.embeddings_and_evoformer
    module = StructureModule(config.heads.structure_module, config.global_config, evoformer.seq_channel,
                             evoformer.pair_channel)
    params = random_module_parameters(module, "structure_module", seed=7)
    load_haiku_params(module, flat_parameters(params), prefix="structure_module")
    module = module.to(device).eval()
    features = real_features(model_config("model_1_ptm"), num_res=NUM_RES)
    batch = {key: torch.from_numpy(features[key][0]).to(device) for key in ("aatype", "seq_mask")}
    generator = torch.Generator().manual_seed(8)
    inputs = {"single": torch.randn(NUM_RES, evoformer.seq_channel, generator=generator).to(device),
              "pair": torch.randn(NUM_RES, NUM_RES, evoformer.pair_channel, generator=generator).to(device)}
    reference, ours = run_both(lambda x: module(x, batch), inputs, monkeypatch)
    with torch.no_grad():
        upcast = module({key: value.bfloat16().float() for key, value in inputs.items()}, batch)
    positions, expected = ours["final_atom_positions"], reference["final_atom_positions"]
    errors = {"atoms (A)": float((positions - expected).abs().max()), "act": relative_error(ours["act"],
                                                                                          reference["act"])}
    report(f"structure module (atoms up to {float(expected.abs().max()):.0f} A)", errors)
    assert positions.dtype == torch.float32 and ours["act"].dtype == torch.float32
    assert torch.equal(positions, upcast["final_atom_positions"])  # float32 after the first cast
    assert errors["atoms (A)"] <= 0.5 and errors["act"] <= 3e-2


def test_whole_model(device, monkeypatch):
    """model_1_ptm at full depth (48 blocks), 2 iterations, real features of 64 residues."""
    config = model_config("model_1_ptm")
    config.data.eval.max_msa_clusters = 36
    config.data.common.max_extra_msa = 128
    config.data.common.num_recycle = 1
    config.model.num_recycle = 1
    features = as_torch(real_features(config, first_column=40, num_res=NUM_RES))
    model = AlphaFold(config.model)
    params = random_module_parameters(model.alphafold_iteration, PARAMETER_PREFIX, seed=9)
    load_haiku_params(model.alphafold_iteration, flat_parameters(params), prefix=PARAMETER_PREFIX)
    model = model.to(device).eval()
    features = {key: value.to(device) for key, value in features.items()}

    def predict(bfloat16: bool):
        config.model.global_config.bfloat16 = bfloat16
        with torch.no_grad():
            return model(features, return_representations=True)

    with monkeypatch.context() as patch:
        patch.setenv("FASTFOLD_KERNEL", "torch")
        reference = predict(bfloat16=False)
    ours = predict(bfloat16=True)
    config.model.global_config.bfloat16 = False
    positions = ours["structure_module"]["final_atom_positions"]
    expected = reference["structure_module"]["final_atom_positions"]
    relative = {key: relative_error(ours["representations"][key], reference["representations"][key])
                for key in ("single", "pair", "msa")}
    relative.update({f"{head} logits": relative_error(ours[head]["logits"], reference[head]["logits"])
                     for head in ("distogram", "predicted_lddt", "predicted_aligned_error")})
    relative["atoms"] = relative_error(positions, expected)
    absolute = {"atoms max (A)": float((positions - expected).abs().max()),
                "pLDDT max": float((ours["plddt"] - reference["plddt"]).abs().max()),
                "PAE mean (A)": float((ours["pae"] - reference["pae"]).abs().mean()),
                "PAE max (A)": float((ours["pae"] - reference["pae"]).abs().max()),
                "pTM": float((ours["ptm"] - reference["ptm"]).abs().max())}
    report(f"whole model, relative (atoms up to {float(expected.abs().max()):.0f} A)", relative)
    report("whole model, absolute", absolute)
    assert all(value.dtype == torch.float32 for value in ours["representations"].values())
    assert max(relative.values()) <= 0.1
    assert absolute["pLDDT max"] <= 5.0 and absolute["PAE mean (A)"] <= 1.0 and absolute["pTM"] <= 0.05
