import pytest

from agents.policy import freeze_bottom, load_policy
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer


def test_freeze_bottom():
    model = tiny_causal_lm(layers=2)
    freeze_bottom(model, 1)
    assert not model.get_input_embeddings().weight.requires_grad
    assert not any(p.requires_grad for p in model.model.layers[0].parameters())
    assert all(p.requires_grad for p in model.model.layers[1].parameters())
    with pytest.raises(ValueError, match="freeze_layers"):
        freeze_bottom(tiny_causal_lm(layers=2), 3)
    with pytest.raises(ValueError, match="`freeze_layers` must be an int >= 0, got -1"):
        freeze_bottom(tiny_causal_lm(layers=2), -1)


def test_load_policy_round_trip(tmp_path):
    tok, model = tiny_tokenizer(), tiny_causal_lm()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_policy(tmp_path)
    assert not loaded.training and loaded_tok.eos_token == tok.eos_token
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(tmp_path / "nope")
