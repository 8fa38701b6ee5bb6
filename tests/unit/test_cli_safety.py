"""What the CLI prints cannot leak a password or be forged by control characters."""

from __future__ import annotations

import logging

import pytest

from legato._redact import redact
from legato.cli import main
from legato.cli._output import printable


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("postgresql://u:pw@h:5432/db?options=x", "postgresql://u:***@h:5432/db?options=x"),
    ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql://u:a@b@h/db", "postgresql://u:***@h/db"),  # an unescaped "@" in it
    ("redis+sentinel://:pw@h1:26379,h2:26379/svc",
     "redis+sentinel://:***@h1:26379,h2:26379/svc"),
    ("postgresql://u@h/db?sslmode=x&password=pw&y=2",
     "postgresql://u@h/db?sslmode=x&password=***&y=2"),
    ("redis+sentinel://h:26379/svc?sentinel_username=w&sentinel_password=pw&namespace=n",
     "redis+sentinel://h:26379/svc?sentinel_username=w&sentinel_password=***&namespace=n"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ("zookeeper://h:2181/x", "zookeeper://h:2181/x"),
    ("redis://u@h", "redis://u@h"),
    ("cannot reach 'redis://u:pw@h:1/0' (retrying)",
     "cannot reach 'redis://u:***@h:1/0' (retrying)"),
])
def test_redact_masks_passwords_only(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_printable_escapes_control_characters() -> None:
    assert printable("evil\n\x1b[31mFAKE\t\r\x00\x7f\x9b é [bold]") == (
        "evil\\n\\x1b[31mFAKE\\t\\r\\x00\\x7f\\x9b é [bold]")
    assert printable("plain") == "plain"


def test_log_lines_are_masked_and_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    root, legato_logger = logging.getLogger(), logging.getLogger("legato")
    saved = root.handlers[:], root.level, legato_logger.level
    main._configure_logging(debug=False)
    try:
        logging.getLogger("legato.test").warning("job %s on %s", "a\nERROR: forged",
                                                 "redis://:S3cretPW@h/0")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        legato_logger.setLevel(saved[2])
    err = capsys.readouterr().err
    assert err == "WARNING: job a\\nERROR: forged on redis://:***@h/0\n"


def test_rich_output_prints_names_literally_and_escaped() -> None:
    import io

    from legato.cli._output import Mode, Output

    stream = io.StringIO()
    out = Output(Mode.RICH, stream=stream)
    out.table([{"name": "[bold]x[/bold]\n\x1b[31mFAKE", "state": "ok"}], ["name", "state"])
    out.fields({"name": "[red]y[/red]\rz"}, title="job")
    out.text("[blue]w[/blue]\x1b[2J")
    text = stream.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert "[bold]x[/bold]\\n\\x1b[31mFAKE" in text
    assert "[red]y[/red]\\rz" in text and "[blue]w[/blue]\\x1b[2J" in text
    assert not any(line.lstrip("│ ").startswith("FAKE") for line in text.splitlines())
