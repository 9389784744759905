import subprocess
import sys

import pytest

from igpo_env.cli import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for path in COMMANDS:
        assert path[0] in out


@pytest.mark.parametrize("path", list(COMMANDS))
def test_each_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*path, "--help"])
    assert e.value.code == 0
    assert "usage: igpo-env" in capsys.readouterr().out


def test_every_command_module_is_available():
    from igpo_env.cli import _parses_itself, _resolve

    for target, _ in COMMANDS.values():
        pair = ("make_parser", "main") if _parses_itself(target) else ("add_arguments", "run")
        assert all(callable(_resolve(target, attr)) for attr in pair), target
    assert _parses_itself("agents.igpo.cli:train")  # flags generated from IGPOConfig by trl.TrlParser


def test_unknown_flags_exit_2_for_both_kinds_of_command(capsys):
    for argv in (["eval", "--no-such-flag"], ["train", "--no-such-flag", "1"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2


def test_user_error_is_one_line_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "igpo_env.cli", "bench", "no_such_benchmark"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("igpo-env: error: unknown benchmark 'no_such_benchmark'")
    assert "Traceback" not in proc.stderr


def test_parser_and_package_import_stay_light():
    code = (
        "import sys, igpo_env, gymnasium as gym; from igpo_env.cli import make_parser; make_parser(); "
        "heavy = [m for m in ('torch', 'transformers', 'faiss', 'trl') if m in sys.modules]; print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
