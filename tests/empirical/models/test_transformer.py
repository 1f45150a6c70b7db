"""The transformer classifier: per-batch padding changes nothing but the cost, the model's limits and folders are
checked in one line, and AdamW exempts what transformers' Trainer exempts from weight decay."""

from __future__ import annotations

import pytest
import torch

from samat.core.errors import ParameterError
from samat.empirical.data.text.generated import generate
from samat.empirical.models import build_model
from samat.empirical.models.transformer import check_max_length, load_tokenizer, model_config, no_weight_decay
from tests.text import MAX_LENGTH, needs_text

pytestmark = needs_text


def _classifier(folder, weights=None):
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(folder), MAX_LENGTH)
    model = build_model("transformer", input_shape=(MAX_LENGTH,), num_classes=2,
                        options={"model": str(folder), "pad_id": tokenizer.pad_token_id}).eval()
    if weights is not None:
        model.load_state_dict(torch.load(weights))
    return model, tokenizer


def test_a_batch_padded_to_any_length_gives_each_sentence_its_own_logits(tiny_model, trained_run):
    model, tokenizer = _classifier(tiny_model, trained_run / "model.pt")
    model.double()  # in float64, so that the rounding of the reductions is far below what a masking error moves
    texts = list(generate({"train": 6, "validation": 1, "test": 1}).texts["train"])
    batch = tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model(tokenizer([t], return_tensors="pt")["input_ids"]) for t in texts])
        unmasked = model.network(input_ids=batch).logits  # what padding does when it is not masked
    # The same sums over a different number of (masked) keys: a masked key's weight is exactly 0, so the two differ
    # only by the order of float64 roundings, each 2**-53 relative, over the two layers' few thousand operations per
    # logit (~1e-12 of the logits' size); 1e-9 of it leaves that margin, a padding that leaks moves them by > 0.1.
    scale = float(alone.abs().max())
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-9 * scale)
    assert (unmasked - alone).abs().max() > 0.1


def test_max_length_beyond_the_model_and_a_missing_folder_are_parameter_errors(tiny_model, tmp_path):
    config = model_config(str(tiny_model))
    assert config.max_position_embeddings == 64
    check_max_length(str(tiny_model), 64, config)
    with pytest.raises(ParameterError) as err:
        check_max_length(str(tiny_model), 65, config)
    assert err.value.name == "text.max_length" and "8..64" in str(err.value)
    with pytest.raises(ParameterError) as err:
        load_tokenizer(str(tmp_path / "nowhere"), MAX_LENGTH)
    assert err.value.name == "text.model" and "config.json" in str(err.value)


def test_adamw_exempts_what_the_trainer_exempts_from_weight_decay(tiny_model):
    from transformers import Trainer

    model, _ = _classifier(tiny_model)
    decayed = set(Trainer.get_decay_parameter_names(None, model))  # the Trainer's own rule (it uses no self)
    exempt = no_weight_decay(model)
    names = {p: n for n, p in model.named_parameters()}
    assert {names[p] for p in exempt} == set(names.values()) - decayed
    assert any("LayerNorm" in names[p] for p in exempt) and not any(n.endswith("bias") for n in decayed)
