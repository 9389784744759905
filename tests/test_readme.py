"""The README's runnable Python block must run as written.

Its default IG scorer is the packaged SmolLM2; here a tiny GGUF model that the test writes itself stands in for it
through the same registry, fetch and conversion path (no download).
"""

import hashlib
import re
from pathlib import Path

from testing_utils import write_tiny_gguf, write_wheel

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys, tmp_path, monkeypatch):
    import igpo_env.models
    from igpo_env.models import PackagedModel, PackageFile, ensure_model
    from igpo_env.models import registry as registry_mod

    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf)
    data = gguf.read_bytes()
    write_wheel(tmp_path, "igpo-readme-model", "0.0.1", {"igpo_readme_model/tiny.gguf": data})
    spec = PackagedModel(
        name="readme-stand-in",
        parts=(PackageFile("igpo-readme-model", "0.0.1", "igpo_readme_model/tiny.gguf"),),
        gguf_name="tiny.gguf",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        license="Apache-2.0",
        chat_format="chatml",
        description="test stand-in for the default model",
    )
    monkeypatch.setitem(registry_mod.MODELS, spec.name, spec)
    ensure_model(spec.name, wheel_dir=tmp_path)
    monkeypatch.setattr(igpo_env.models, "DEFAULT_MODEL", spec.name)

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README has no ```python block"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert "information" in capsys.readouterr().out
