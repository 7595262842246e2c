"""What the in-process command-line tests share: running ``lvmkit`` in this process, and the
check that an error is one line."""

import pytest

from lvmkit.cli.main import main


@pytest.fixture
def run_cli(tmp_path, monkeypatch, capsys):
    """``run_cli(*args, code=0) -> (stdout, stderr)``: the command line run in-process in
    ``tmp_path``, its exit status checked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LVMKIT_DEBUG", raising=False)

    def run(*args, code=0):
        status = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert status == code, (status, out, err)
        return out, err

    return run


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]
