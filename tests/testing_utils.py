"""Shared test helpers. Append new helpers at the end; several helpers edit this file.

Tiny models and tokenizers (no downloads) live in the package (igpo_env.scoring.tiny) so doctests and benchmarks can
use them too; they are re-exported here.
"""

from __future__ import annotations

from igpo_env.scoring.tiny import CHATML_JINJA, tiny_causal_lm, tiny_tokenizer

__all__ = ["CHATML_JINJA", "tiny_causal_lm", "tiny_tokenizer"]


def one_torch_thread():
    """Context manager: run torch on one thread (much faster than 2 on the shared 2-core CI box), then restore."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def _ctx():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return _ctx()


def _permute_for_gguf(w, n_head: int):
    """llama.cpp's q/k row order (the inverse of what transformers' GGUF loader undoes)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path, seed: int = 0):
    """Write a random-init tiny Llama with the tiny BPE chat tokenizer as a float32 GGUF file (llama.cpp layout).

    Returns ``(model, tokenizer)``: the HF model the file was written from (tied embeddings) and its tokenizer, so a
    test can compare what transformers reads back with what went in.
    """
    import json

    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    data = json.loads(tok.backend_tokenizer.to_str())
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    special = set(tok.all_special_tokens)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t, _ in vocab])
    merges = data["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_pad_token_id(cfg.pad_token_id)
    w.add_chat_template(CHATML_JINJA)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _permute_for_gguf(t, cfg.num_attention_heads)
            elif gg == "attn_k":
                t = _permute_for_gguf(t, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", t)
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model, tok


def write_wheel(directory, package: str, version: str, files: dict):
    """Write a minimal valid wheel ``{package}-{version}-py3-none-any.whl`` holding ``files`` (path -> bytes)."""
    import base64
    import hashlib
    import zipfile
    from pathlib import Path

    dist = package.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode()
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: igpo-env-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for name, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = Path(directory) / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def tiny_igpo_args(output_dir, **overrides):
    """An ``IGPOConfig`` for one CPU step of IGPOTrainer on the tiny fixture model (4 rollouts per prompt, 2 prompts,
    up to 2 turns of 6 tokens, lr 1e-2, no KL, no saving or reporting); ``overrides`` replace any field."""
    from agents.igpo.igpo_config import IGPOConfig

    kwargs = dict(
        output_dir=str(output_dir),
        max_steps=1,
        num_generations=4,
        per_device_train_batch_size=8,
        max_turns=2,
        max_turn_tokens=6,
        learning_rate=1e-2,
        report_to="none",
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        beta=0.0,
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
    )
    kwargs.update(overrides)
    return IGPOConfig(**kwargs)


def save_tiny_policy(directory):
    """Save the from-scratch tiny policy (tokenizer + LM, eos / pad set) as an HF model directory; return it."""
    tok, model = tiny_tokenizer(), tiny_causal_lm(seed=1)
    model.config.eos_token_id, model.config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def free_port():
    """A loopback port free right now (released again: whoever binds it next may race another process)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
