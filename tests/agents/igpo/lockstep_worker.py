"""Worker of ``test_multiprocess.py``: rollouts of an FSDP2-sharded tiny policy in lock step (run under torchrun).

Each of the 2 processes shards the tiny model with ``torch.distributed.fsdp.fully_shard`` (gloo, CPU), so every
forward pass all-gathers parameters: a collective. Rank 0 plays longer episodes than rank 1 (more forward passes);
:class:`agents.igpo.lockstep.LockstepModel` keeps them in step. Each rank writes ``rank{R}.json`` to ``argv[1]``: its
rollouts' completion ids and IG rewards, those of the unsharded model with the same seeds, and the dummy passes run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out: str) -> None:
    """Play the rank's rollouts sharded (in lock step) and unsharded; write both to ``out/rank{R}.json``."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from agents.igpo.lockstep import LockstepModel
    from agents.rollout import IGSpec, generate_rollouts, make_envs
    from igpo_env.data.toy import toy_corpus, toy_qa
    from igpo_env.retrieval import BM25Retriever
    from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    tok = tiny_tokenizer()
    envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    qids = ["tq0", "tq0"] if rank == 0 else ["tq1", "tq1"]
    kwargs = dict(max_turns=3 if rank == 0 else 1, max_turn_tokens=5, ig=IGSpec(), seed=[10 + rank, 20 + rank])
    reference, _ = generate_rollouts(tiny_causal_lm(seed=2), tok, envs, qids, **kwargs)
    sharded = tiny_causal_lm(seed=2)
    for layer in sharded.model.layers:
        fully_shard(layer)
    fully_shard(sharded)
    param_type = type(next(sharded.parameters())).__name__  # DTensor: each rank holds a shard
    policy = LockstepModel(sharded)
    rollouts, _ = generate_rollouts(policy, tok, envs, qids, **kwargs)
    dummies = policy.finish()
    dist.barrier()
    result = {
        "param_type": param_type,
        "rounds": policy.rounds,
        "dummies": dummies,
        "completion_ids": [r.completion_ids for r in rollouts],
        "reference_ids": [r.completion_ids for r in reference],
        "ig": [r.ig_rewards for r in rollouts],
        "reference_ig": [r.ig_rewards for r in reference],
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
