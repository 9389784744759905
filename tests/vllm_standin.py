"""A loopback stand-in for the vLLM server TRL 1.16's ``VLLMClient`` talks to (``trl vllm-serve`` / ``vllm serve``).

vLLM does not install on this CPU-only project, so the trainer's server mode (``use_vllm=True, vllm_mode="server"``)
and :class:`~igpo_env.scoring.openai_compat.OpenAICompatScorer` are tested against this FastAPI app, which serves the
HTTP protocol read from the installed ``trl/generation/vllm_client.py`` (TRL 1.16: ``trl vllm-serve`` is deprecated
and only ``exec``\\ s ``VLLM_SERVER_DEV_MODE=1 vllm serve MODEL --weight-transfer-config '{"backend": "nccl"}'
--logprobs-mode processed_logprobs --max-logprobs -1``, so the protocol is vLLM's OpenAI server plus its dev-mode
endpoints; the older ``/generate/``, ``/init_communicator/``, ``/update_named_param/`` routes are gone):

========================================  ===================================================================
``GET  /health``                          ``VLLMClient.check_server``
``GET  /v1/models``                       ``VLLMClient.__init__`` (the served model name)
``GET  /get_world_size``                  ``VLLMClient.init_communicator`` (TP x DP workers)
``GET  /server_info?config_format=json``  ``init_communicator`` (``weight_transfer_config``) and ``GRPOTrainer``
                                          (``model_config.logprobs_mode``)
``POST /v1/completions``                  ``VLLMClient.generate`` (token-id prompts, ``n``, sampling params,
                                          ``return_token_ids``, ``return_tokens_as_token_ids``, ``stop``...);
                                          ``OpenAICompatScorer`` (``echo=True``, ``logprobs=k``, ``max_tokens=0``)
``POST /init_weight_transfer_engine``     ``init_communicator`` (``{"init_info": {...}}``)
``POST /start_weight_update``             ``VLLMClient.update_named_params``
``POST /update_weights``                  ``update_named_params`` (``{"update_info": {names, dtype_names,
                                          shapes, packed}}``; the workers then receive the tensors over NCCL)
``POST /finish_weight_update``            ``update_named_params``
``POST /reset_prefix_cache``              ``VLLMClient.reset_prefix_cache`` (after every weight sync)
========================================  ===================================================================

Generation and scoring are real: a tiny HF causal LM samples (temperature, top-k, top-p, min-p, stop strings, EOS,
``seed``) and returns vLLM's ``processed_logprobs`` (log-softmax of the temperature-scaled, filtered logits).

The one part that is not real is the NCCL weight transfer, which needs CUDA and vLLM's communicator:
:func:`patch_trl_for_standin` replaces it at the communicator boundary by an in-process queue (:class:`TensorChannel`).
TRL's own ``update_named_params`` still runs (metadata walk, ``/start_weight_update``, ``/update_weights`` posted
concurrently with the "broadcast", ``/finish_weight_update``, ``/reset_prefix_cache``), and the stand-in's
``/update_weights`` takes the announced tensors off the queue, checks their names, dtypes and shapes against the
announcement and loads them into its model, so after a sync the stand-in generates with the trainer's weights.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

CHANNEL_TIMEOUT_S = 30.0
"""Seconds ``/update_weights`` waits for each announced tensor (a hang would otherwise block the test)."""


class TensorChannel:
    """The in-process stand-in for the trainer <-> server NCCL group: the trainer puts tensors, the server takes them.

    ``group`` mirrors the attribute TRL's ``VLLMClient.close_communicator`` clears.
    """

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, torch.Tensor]] = queue.Queue()
        self.group = type("Group", (), {"store": None, "socket": None})()
        self.sent: list[str] = []

    def send(self, name: str, tensor: torch.Tensor) -> None:
        """Trainer side: "broadcast" one tensor (a CPU copy, as NCCL would copy it to the workers)."""
        self.sent.append(name)
        self.queue.put((name, tensor.detach().to("cpu", copy=True)))

    def receive(self) -> tuple[str, torch.Tensor]:
        """Server side: the next tensor, or ``RuntimeError`` when none comes within :data:`CHANNEL_TIMEOUT_S`."""
        try:
            return self.queue.get(timeout=CHANNEL_TIMEOUT_S)
        except queue.Empty as e:
            raise RuntimeError(f"no tensor arrived within {CHANNEL_TIMEOUT_S} s") from e


@dataclass
class Sample:
    """One generated sequence: token ids, their processed log-probs, why it stopped."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    stop_reason: str | int | None


def _error(message: str, status: int = 400) -> JSONResponse:
    """vLLM's OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": "BadRequestError", "code": status}}, status_code=status)


class VLLMStandIn:
    """The FastAPI app and its state: model, tokenizer, request log, weight-transfer channel.

    Args:
        model: A HF causal LM (e.g. :func:`igpo_env.scoring.tiny.tiny_causal_lm`).
        tokenizer: Its tokenizer.
        model_name: The served model name (``--served-model-name``).
        world_size: What ``/get_world_size`` answers (TP x DP).
        logprobs_mode: What ``/server_info`` reports (``trl vllm-serve`` sets ``processed_logprobs``).
        weight_transfer: ``False`` serves a server started without ``--weight-transfer-config``.
        seed: Seed of the sampler for requests without ``seed``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_name: str = "tiny",
        world_size: int = 1,
        logprobs_mode: str = "processed_logprobs",
        weight_transfer: bool = True,
        seed: int = 0,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.world_size = world_size
        self.logprobs_mode = logprobs_mode
        self.weight_transfer = weight_transfer
        self.channel = TensorChannel()
        self.requests: list[tuple[str, Any]] = []
        """``(path, JSON body or None)`` of every request, in arrival order."""
        self.weight_updates: list[list[str]] = []
        """Names of the tensors loaded by each ``/update_weights``."""
        self._lock = threading.Lock()
        self._generator = torch.Generator().manual_seed(seed)
        eos = {tokenizer.eos_token_id} | set(getattr(model.generation_config, "eos_token_id", None) or [])
        self.eos_ids = {int(t) for t in eos if t is not None}
        self.app = self._build_app()

    # ------------------------------------------------------------------ model
    def _logits(self, ids: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([ids])).logits[0].float()

    def _sample(self, prompt: list[int], body: dict[str, Any], generator: torch.Generator) -> Sample:
        temperature = float(body.get("temperature", 1.0))
        top_k = int(body.get("top_k") or 0)
        top_p = float(body.get("top_p", 1.0))
        min_p = float(body.get("min_p") or 0.0)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        out: list[int] = []
        lps: list[float] = []
        for _ in range(int(body.get("max_tokens", 16))):
            logits = self._logits(prompt + out)[-1]
            if temperature > 0:
                logits = logits / temperature
            if top_k > 0:
                logits[logits < logits.topk(min(top_k, logits.numel())).values[-1]] = -torch.inf
            if top_p < 1.0:
                probs, order = logits.softmax(-1).sort(descending=True)
                drop = probs.cumsum(-1) - probs > top_p
                logits[order[drop]] = -torch.inf
            if min_p > 0:
                probs = logits.softmax(-1)
                logits[probs < min_p * probs.max()] = -torch.inf
            logp = logits.log_softmax(-1)
            greedy = temperature == 0
            tok = int(logp.argmax()) if greedy else int(torch.multinomial(logp.exp(), 1, generator=generator))
            out.append(tok)
            lps.append(float(logp[tok]))
            if tok in self.eos_ids and not body.get("ignore_eos"):
                return Sample(out, lps, "stop", None)
            text = self.tokenizer.decode(out)
            for s in stops:
                if s in text:
                    return Sample(out, lps, "stop", s)
        return Sample(out, lps, "length", None)

    def _prompt_logprobs(self, ids: list[int]) -> list[float | None]:
        logp = self._logits(ids).log_softmax(-1)
        return [None] + [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]

    # ------------------------------------------------------------------ /v1/completions
    def _token_str(self, tok: int, as_ids: bool) -> str:
        return f"token_id:{tok}" if as_ids else self.tokenizer.decode([tok])

    def _logprobs_block(self, ids: list[int], lps: list[float | None], as_ids: bool, start: int) -> dict[str, Any]:
        tokens = [self._token_str(t, as_ids) for t in ids]
        offsets, pos = [], start
        for t in tokens:
            offsets.append(pos)
            pos += len(t)
        return {
            "text_offset": offsets,
            "token_logprobs": lps,
            "tokens": tokens,
            "top_logprobs": [None if lp is None else {tok: lp} for tok, lp in zip(tokens, lps, strict=True)],
        }

    def completions(self, body: dict[str, Any]) -> Any:
        """``POST /v1/completions`` as vLLM answers it (non-streaming)."""
        if body.get("model") != self.model_name:
            return _error(f"The model `{body.get('model')}` does not exist.", 404)
        if float(body.get("repetition_penalty", 1.0)) != 1.0:
            return _error("the stand-in does not implement repetition_penalty != 1")
        prompts = body.get("prompt")
        if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts:
            return _error(f"`prompt` must be a string, token ids or a list of them, got {str(prompts)[:80]}")
        echo, n = bool(body.get("echo")), int(body.get("n", 1))
        max_tokens = int(body.get("max_tokens", 16))
        if max_tokens < 0 or (max_tokens == 0 and not echo):
            return _error(f"max_tokens must be at least 1, got {max_tokens}.")
        k = body.get("logprobs")
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        generator = self._generator if body.get("seed") is None else torch.Generator().manual_seed(int(body["seed"]))
        choices = []
        with self._lock:
            for p, prompt in enumerate(prompts):
                ids = self.tokenizer(prompt)["input_ids"] if isinstance(prompt, str) else [int(t) for t in prompt]
                prompt_lps = self._prompt_logprobs(ids) if echo and k is not None else None
                for j in range(n):
                    # vLLM's echo without generation (max_tokens=0): only the prompt comes back
                    sample = self._sample(ids, body, generator) if max_tokens else Sample([], [], "length", None)
                    gen_ids = sample.token_ids
                    text = self.tokenizer.decode(gen_ids, skip_special_tokens=True)
                    stop = sample.stop_reason
                    if isinstance(stop, str) and not body.get("include_stop_str_in_output"):
                        text = text[: text.index(stop)]
                    prompt_text = self.tokenizer.decode(ids) if echo else ""
                    block = None
                    if k is not None:
                        all_ids = (ids if echo else []) + gen_ids
                        all_lps = (prompt_lps if echo else []) + sample.logprobs
                        block = self._logprobs_block(all_ids, all_lps, as_ids, 0)
                    choice = {
                        "index": p * n + j,
                        "text": prompt_text + text,
                        "logprobs": block,
                        "finish_reason": sample.finish_reason,
                        "stop_reason": stop,
                        "prompt_logprobs": None,
                    }
                    if body.get("return_token_ids"):
                        choice["prompt_token_ids"] = ids
                        choice["token_ids"] = gen_ids
                    choices.append(choice)
        return {
            "id": f"cmpl-{len(self.requests)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
        }

    # ------------------------------------------------------------------ weight transfer (dev mode)
    def update_weights(self, body: dict[str, Any]) -> Any:
        """``POST /update_weights``: receive the announced tensors from the channel, check them, load them."""
        info = body.get("update_info") or {}
        names, dtypes, shapes = info.get("names"), info.get("dtype_names"), info.get("shapes")
        if not (isinstance(names, list) and len(names) == len(dtypes or []) == len(shapes or [])):
            return _error(f"`update_info` needs equal-length names / dtype_names / shapes, got {str(info)[:120]}")
        params = dict(self.model.named_parameters())
        loaded = []
        with self._lock, torch.no_grad():
            for name, dtype, shape in zip(names, dtypes, shapes, strict=True):
                got_name, tensor = self.channel.receive()
                got = (got_name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape))
                if got != (name, dtype, shape):
                    return _error(f"announced {(name, dtype, shape)}, received {got}")
                if name not in params:
                    return _error(f"the served model has no parameter {name!r}")
                params[name].copy_(tensor)
                loaded.append(name)
        self.weight_updates.append(loaded)
        return {}

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        def log(request: Request, body: Any = None) -> None:
            self.requests.append((request.url.path, body))

        @app.get("/health")
        def health(request: Request):
            log(request)
            return Response(status_code=200)

        @app.get("/v1/models")
        def models(request: Request):
            log(request)
            return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "vllm"}]}

        @app.get("/get_world_size")
        def get_world_size(request: Request):
            log(request)
            return {"world_size": self.world_size}

        @app.get("/server_info")
        def server_info(request: Request):
            log(request, dict(request.query_params))
            transfer = {"backend": "nccl"} if self.weight_transfer else None
            config = {
                "model_config": {"model": self.model_name, "logprobs_mode": self.logprobs_mode},
                "weight_transfer_config": transfer,
            }
            return {"vllm_config": config}

        @app.post("/v1/completions")
        def completions(request: Request, body: dict):
            log(request, body)
            return self.completions(body)

        @app.post("/init_weight_transfer_engine")
        def init_weight_transfer_engine(request: Request, body: dict):
            log(request, body)
            if not self.weight_transfer:
                return _error("weight transfer is not configured (--weight-transfer-config)")
            return {}

        def acknowledge(request: Request, body: dict):
            log(request, body)
            return {}

        for path in ("/start_weight_update", "/finish_weight_update"):  # bracket a weight update; nothing to do here
            app.add_api_route(path, acknowledge, methods=["POST"])

        @app.post("/update_weights")
        def update_weights(request: Request, body: dict):
            log(request, body)
            return self.update_weights(body)

        @app.post("/reset_prefix_cache")
        def reset_prefix_cache(request: Request):
            log(request)
            return {"success": True}

        return app

    def paths(self) -> list[str]:
        """The request paths, in order."""
        return [p for p, _ in self.requests]


def patch_trl_for_standin(monkeypatch: Any, server: VLLMStandIn) -> None:
    """Let TRL's server mode run on this CPU-only machine against ``server``; patches nothing on the HTTP path.

    - ``is_vllm_available`` -> ``True`` in ``trl.import_utils`` and the two modules that bound it
      (``VLLMGeneration`` and ``VLLMClient`` refuse to start without vllm importable, which it is not here);
    - ``VLLMClient.init_communicator``: makes the real one's HTTP calls (``/server_info`` weight-transfer check,
      ``/get_world_size``, ``/init_weight_transfer_engine`` with the same ``init_info``) but joins ``server.channel``
      instead of vLLM's NCCL group (which needs CUDA and vllm);
    - the NCCL broadcast inside TRL's ``update_named_params`` (``NCCLWeightTransferEngine.trainer_send_weights``, a
      name TRL binds only when vllm imports) -> ``server.channel.send`` of each tensor.
    """
    import importlib

    vllm_client = importlib.import_module("trl.generation.vllm_client")
    vllm_generation = importlib.import_module("trl.generation.vllm_generation")
    for module in (importlib.import_module("trl.import_utils"), vllm_client, vllm_generation):
        monkeypatch.setattr(module, "is_vllm_available", lambda min_version=None: min_version is None)

    def init_communicator(self, device=0):
        if self.get_server_info()["weight_transfer_config"] is None:
            raise RuntimeError(f"The vLLM server at {self.base_url} has no weight-transfer engine.")
        init_info = {
            "master_address": "127.0.0.1",
            "master_port": self.group_port,
            "rank_offset": 1,
            "world_size": self.get_world_size() + 1,
        }
        self._post(f"{self.base_url}/init_weight_transfer_engine", json={"init_info": init_info})
        self.communicator = server.channel

    class SendArgs:
        def __init__(self, group, packed):
            self.group, self.packed = group, packed

    class NCCLWeightTransferEngine:
        @staticmethod
        def trainer_send_weights(iterator, trainer_args):
            for name, tensor in iterator:
                trainer_args.group.send(name, tensor)

    monkeypatch.setattr(vllm_client.VLLMClient, "init_communicator", init_communicator)
    monkeypatch.setattr(vllm_client, "_HAS_STATEFUL_TRAINER_ENGINE", False)
    monkeypatch.setattr(vllm_client, "NCCLWeightTransferEngine", NCCLWeightTransferEngine, raising=False)
    monkeypatch.setattr(vllm_client, "NCCLTrainerSendWeightsArgs", SendArgs, raising=False)
