"""The README's runnable Python block must run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README has no ```python block"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert "information" in capsys.readouterr().out
