"""Information-gain scoring speed: naive full recompute vs batched vs batched + prefix KV reuse, same model and turns.

Workload: ``N`` SearchQA-v0 episodes (default SynthWiki world; the toy corpus if it is unavailable) played by a
scripted searcher for ``T`` search turns (the first query is the question, later ones the titles it retrieved), so
every transcript grows by one assistant turn and one ``<information>`` observation per turn. IG needs ``N * (T + 1)``
gold-answer scores (``p_0`` at reset, then one per turn). Three ways, side by side in one run, same model:

- ``naive``: one unpadded full forward per (env, turn) (:func:`igpo_env.scoring.hf.naive_target_logprobs`);
- ``batched``: one :meth:`HFScorer.score` call per turn for all envs, no cache;
- ``batched_prefix_reuse``: the same with one cache key per episode, so each call encodes only the new turn.

Reported: scored turns/s, speed-up over naive, and the max abs difference of the per-turn IG rewards
(``p_t - p_{t-1}``) from naive. Then the share of IG scoring in a rollout: the same model generates ``GEN_TOKENS``
tokens per turn for all envs (batched ``generate`` with KV cache, left padding), and ``ig_share_of_generation`` is
best-IG time / generation time. The model is random-init (speed does not depend on the weights) with the embedded
small LM's shape (Qwen2, hidden 256, 4 layers), or ``--model DIR``. Torch runs on ``--threads`` threads (1 is
fastest on a loaded 2-core box).

Run: ``python -m benchmarks.ig_scoring [--quick] [--out DIR] [--model DIR] [--threads N]``; writes
``ig_scoring.json`` and ``ig_scoring.md``. The scorer-server throughput comparison is ``benchmarks/scorer_server.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import re
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "ig_scoring"
SEED = 0
TURNS = 5
ENV_COUNTS = {"quick": (16,), "full": (16, 64)}
GEN_TOKENS = 64
"""Tokens generated per assistant turn in the generation-share measurement."""
BATCH_SIZE = 64
HIDDEN, LAYERS, HEADS, KV_HEADS, MLP = 256, 4, 4, 4, 768
"""Shape of the random-init model (the embedded ``small`` policy LM's)."""
VOCAB = 3072
"""BPE vocabulary of the random-init model (as the embedded small LM's)."""
TOKENIZER_PASSAGES = 3000
MAX_POSITIONS = 16384

_TITLE = re.compile(r"\(Title: ([^)]*)\)")

logger = logging.getLogger(__name__)


def build_model(model_dir: str | None) -> tuple[Any, Any, str]:
    """Return (model, tokenizer, description)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from igpo_env.scoring.tiny import tiny_tokenizer

    if model_dir:
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        return model, tok, f"{model_dir} ({model.num_parameters() / 1e6:.1f}M params)"
    tok = tiny_tokenizer(vocab_size=VOCAB, texts=_tokenizer_texts())
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).eval()
    return model, tok, f"random-init Qwen2 {model.num_parameters() / 1e6:.1f}M params, vocab {len(tok)}"


def _tokenizer_texts() -> list[str]:
    """Passages of the world (or the toy corpus) + the prompt, to train the benchmark's BPE tokenizer on."""
    from igpo_env.prompts import DEFAULT_PROMPT_TEMPLATE
    from igpo_env.scoring.templates import IGPO_TEMPLATE

    extra = [DEFAULT_PROMPT_TEMPLATE, IGPO_TEMPLATE.pseudo_response]
    try:
        from igpo_env.data import load_corpus
        from igpo_env.data.synthwiki import default_world

        docs = load_corpus(Path(default_world(SEED)) / "corpus.jsonl")
        return [d.contents for d, _ in zip(docs, range(TOKENIZER_PASSAGES), strict=False)] + extra
    except (ImportError, AttributeError, OSError) as e:
        from igpo_env.data.toy import toy_corpus

        logger.warning("SynthWiki unavailable (%s); training the tokenizer on the toy corpus", e)
        return [d.contents for d in toy_corpus()] + extra


def play(num_envs: int, turns: int) -> tuple[list[list[list[dict]]], list[str], str]:
    """Play ``turns`` search turns in ``num_envs`` envs; return transcripts[env][t] (t = 0..turns) and golds."""
    from igpo_env.envs.vector import SearchQAVectorEnv

    try:
        from igpo_env.data.synthwiki import default_world

        kwargs: dict[str, Any] = {"dataset": str(default_world(SEED)), "split": "dev"}
        world = "SynthWiki default world (dev split)"
    except (ImportError, AttributeError, OSError) as e:  # the world generator is another module; fall back
        from igpo_env.data.toy import toy_corpus, toy_qa
        from igpo_env.retrieval import BM25Retriever

        logger.warning("SynthWiki unavailable (%s); using the toy corpus", e)
        kwargs = {"dataset": toy_qa(), "retriever": BM25Retriever.from_docs(toy_corpus())}
        world = "toy corpus"
    envs = SearchQAVectorEnv(num_envs, max_episode_steps=turns + 1, **kwargs)
    _, infos = envs.reset(seed=SEED)
    history = [[list(infos["messages"][i])] for i in range(num_envs)]
    golds = [gt[0] for gt in envs.ground_truths]
    for t in range(turns):
        actions = []
        for i in range(num_envs):
            titles = _TITLE.findall(history[i][-1][-1]["content"]) if t else []
            query = titles[t % len(titles)] if titles else envs.envs[i].question.question
            actions.append(f"<think>I need to look this up.</think>\n<search>{query}</search>")
        _, _, term, trunc, infos = envs.step(actions)
        if term.any() or trunc.any():
            raise RuntimeError("a scripted search episode ended early")
        for i in range(num_envs):
            history[i].append(list(infos["messages"][i]))
    return history, golds, world


def run_naive(model: Any, scorer: Any, history: list, golds: list[str]) -> tuple[float, list[list[float]]]:
    """One full forward per (env, turn); returns (seconds, p[env][t])."""
    from igpo_env.scoring.hf import naive_target_logprobs

    start = time.perf_counter()
    probs = []
    for transcripts, gold in zip(history, golds, strict=True):
        target = scorer.target_ids(gold)
        row = []
        for messages in transcripts:
            lp = naive_target_logprobs(model, scorer.prefix_ids(messages), target)
            row.append(math.exp(sum(lp) / len(lp)))
        probs.append(row)
    return time.perf_counter() - start, probs


def run_batched(scorer: Any, history: list, golds: list[str], reuse: bool) -> tuple[float, list[list[float]]]:
    """One scorer call per turn for all envs (with or without per-episode cache keys)."""
    n, turns = len(history), len(history[0])
    keys = [f"ep{i}" for i in range(n)] if reuse else None
    scorer.clear_cache()
    start = time.perf_counter()
    cols = []
    for t in range(turns):
        scores = scorer.score([h[t] for h in history], golds, cache_keys=keys)
        cols.append([s.prob for s in scores])
    elapsed = time.perf_counter() - start
    scorer.clear_cache()
    return elapsed, [[cols[t][i] for t in range(turns)] for i in range(n)]


def run_generation(model: Any, tok: Any, history: list) -> float:
    """Seconds to generate GEN_TOKENS tokens per env for each turn (batched, left-padded, KV cache)."""
    import torch

    from igpo_env.scoring.templates import render_transcript

    tok.padding_side = "left"
    start = time.perf_counter()
    for t in range(len(history[0]) - 1):
        texts = [render_transcript(h[t], tok) for h in history]
        enc = tok(texts, add_special_tokens=False, return_tensors="pt", padding=True)
        with torch.inference_mode():
            model.generate(
                **enc,
                max_new_tokens=GEN_TOKENS,
                min_new_tokens=GEN_TOKENS,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
    return time.perf_counter() - start


def rewards(probs: list[list[float]]) -> list[float]:
    """Flatten per-turn IG rewards p_t - p_{t-1}."""
    return [row[t] - row[t - 1] for row in probs for t in range(1, len(row))]


def measure(num_envs: int, model: Any, tok: Any) -> dict[str, Any]:
    """All methods at one env count."""
    from igpo_env.scoring.hf import HFScorer

    history, golds, world = play(num_envs, TURNS)
    scorer = HFScorer(model, tok, batch_size=BATCH_SIZE, max_cached_streams=num_envs)
    lengths = [len(scorer.prefix_ids(h[-1])) for h in history]
    scored = num_envs * (TURNS + 1)
    methods: dict[str, dict[str, float]] = {}
    t_naive, p_naive = run_naive(model, scorer, history, golds)
    ref = rewards(p_naive)
    methods["naive"] = {"seconds": t_naive, "max_abs_reward_diff": 0.0}
    for name, reuse in (("batched", False), ("batched_prefix_reuse", True)):
        seconds, probs = run_batched(scorer, history, golds, reuse)
        diff = max(abs(a - b) for a, b in zip(rewards(probs), ref, strict=True))
        methods[name] = {"seconds": seconds, "max_abs_reward_diff": diff}
    for m in methods.values():
        m["scored_turns_per_s"] = scored / m["seconds"]
        m["speedup_vs_naive"] = t_naive / m["seconds"]
    best = min(methods, key=lambda k: methods[k]["seconds"])
    gen_seconds = run_generation(model, tok, history)
    logger.info("%d envs: %s", num_envs, {k: round(v["seconds"], 2) for k, v in methods.items()})
    return {
        "num_envs": num_envs,
        "turns": TURNS,
        "scored_turns": scored,
        "world": world,
        "final_prefix_tokens_mean": sum(lengths) / len(lengths),
        "final_prefix_tokens_max": max(lengths),
        "methods": methods,
        "best": best,
        "generation_seconds": gen_seconds,
        "generated_tokens": num_envs * TURNS * GEN_TOKENS,
        "ig_share_of_generation": methods[best]["seconds"] / gen_seconds,
    }


def write_markdown(result: dict[str, Any], path: Path) -> None:
    """Write the results table."""
    lines = [
        "# IG scoring: naive vs batched vs batched + prefix reuse",
        "",
        f"Model: {result['model']}; torch threads: {result['threads']}; machine: {result['machine']}.",
        f"Workload: {result['runs'][0]['world']}, scripted searcher, {TURNS} search turns, p_0 + one score per turn.",
        "",
        "| envs | method | seconds | scored turns/s | speed-up vs naive | max abs reward diff |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        for name, m in run["methods"].items():
            lines.append(
                f"| {run['num_envs']} | {name} | {m['seconds']:.2f} | {m['scored_turns_per_s']:.1f} | "
                f"{m['speedup_vs_naive']:.1f}x | {m['max_abs_reward_diff']:.1e} |"
            )
    lines += [
        "",
        "| envs | final transcript tokens (mean / max) | generation s "
        f"({GEN_TOKENS} tok/turn) | best IG s | IG share of generation |",
        "|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        best = run["methods"][run["best"]]["seconds"]
        lines.append(
            f"| {run['num_envs']} | {run['final_prefix_tokens_mean']:.0f} / {run['final_prefix_tokens_max']} | "
            f"{run['generation_seconds']:.2f} | {best:.2f} | {run['ig_share_of_generation']:.1%} |"
        )
    lines += [
        "",
        f"speedup_best_vs_naive = {result['speedup_best_vs_naive']:.1f}x (target >= 5x); "
        f"max_abs_reward_diff = {result['max_abs_reward_diff']:.1e} (target <= 1e-5); "
        f"ig_share_of_generation = {result['ig_share_of_generation']:.1%} (at {result['runs'][0]['num_envs']} envs).",
        "",
    ]
    path.write_text("\n".join(lines))


def make_parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ig_scoring", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 envs only (the full run adds 64).")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory.")
    parser.add_argument("--model", default=None, help="A causal LM dir (default: random-init small Qwen2).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1).")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ig_scoring.json / ig_scoring.md."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import torch

    if args.threads < 1:
        raise ValueError(f"`--threads` must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    model, tok, description = build_model(args.model)
    runs = [measure(n, model, tok) for n in ENV_COUNTS["quick" if args.quick else "full"]]
    first = runs[0]
    result = {
        "model": description,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + ", CPU",
        "quick": args.quick,
        "runs": runs,
        "speedup_best_vs_naive": first["methods"][first["best"]]["speedup_vs_naive"],
        "max_abs_reward_diff": max(m["max_abs_reward_diff"] for r in runs for m in r["methods"].values()),
        "ig_share_of_generation": first["ig_share_of_generation"],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, out / f"{NAME}.md")
    print((out / f"{NAME}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
