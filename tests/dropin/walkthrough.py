"""The installation walkthrough's blocks, read from docs/installation.md, made into one script.

A block is marked by an HTML comment on the line before its fence, which a rendered page
does not show:

* ``<!-- dropin:install -->``: how to build and install the wheel (the test's fixture builds
  and installs it the same way, into a folder of its own);
* ``<!-- dropin:shell -->``: commands, run as they are;
* ``<!-- dropin:append PATH -->`` / ``<!-- dropin:write PATH -->``: a file's new end, or a
  new file, relative to the directory the walkthrough is in at that point;
* ``<!-- dropin:serve -->``: the command that serves the site (another terminal for a
  reader; in the background here).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALLATION = ROOT / "docs" / "installation.md"

# The address the page uses; a test serves on a free port instead.
DOCUMENTED_ADDRESS = "127.0.0.1:8000"
KINDS = {"install", "shell", "append", "write", "serve"}

_MARKED = re.compile(
    r"^<!-- dropin:(?P<kind>[a-z]+)(?: (?P<path>\S+))? -->\n```(?P<lang>\w*)\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
_DELIMITER = "DROPIN_END_OF_FILE"


@dataclass(frozen=True)
class Snippet:
    kind: str
    path: str | None
    lang: str
    body: str


def snippets(text: str | None = None) -> list[Snippet]:
    """The marked blocks of the page, in document order."""
    if text is None:
        text = INSTALLATION.read_text()
    found = [Snippet(m["kind"], m["path"], m["lang"], m["body"]) for m in _MARKED.finditer(text)]
    for snippet in found:
        if snippet.kind not in KINDS:
            raise ValueError(f"unknown block kind dropin:{snippet.kind}")
        if (snippet.kind in ("append", "write")) != (snippet.path is not None):
            raise ValueError(f"dropin:{snippet.kind} {snippet.path or ''}: a file block names its path")
        if _DELIMITER in snippet.body:
            raise ValueError(f"a block contains {_DELIMITER}")
    # A marker with no fence right after it would be skipped silently: count them.
    markers = len(re.findall(r"^<!-- dropin:", text, re.MULTILINE))
    if markers != len(found):
        raise ValueError(f"{markers} dropin markers but {len(found)} marked blocks")
    return found


def of_kind(kind: str, path: str | None = None, text: str | None = None) -> list[Snippet]:
    return [s for s in snippets(text) if s.kind == kind and (path is None or s.path == path)]


def script(blocks: list[Snippet], *, port: int) -> str:
    """One bash script that applies every block in order, serving on ``port``.

    The one change to the page's text: its address ``127.0.0.1:8000`` becomes the free port.
    The install block is left out (the caller installed the wheel). After the serve block the
    script waits until the site answers, as a reader waits for runserver's banner.
    """
    address = f"127.0.0.1:{port}"
    lines = ["set -euo pipefail"]
    for block in blocks:
        body = block.body.replace(DOCUMENTED_ADDRESS, address)
        if block.kind == "install":
            continue
        if block.kind == "shell":
            lines.append(body)
        elif block.kind in ("append", "write"):
            assert block.path is not None
            target = shlex.quote(block.path)
            lines.append(f'mkdir -p "$(dirname {target})"')
            # An appended block starts on a line of its own.
            if block.kind == "append":
                lines.append(f"echo >> {target}")
            redirect = ">>" if block.kind == "append" else ">"
            lines.append(f"cat {redirect} {target} <<'{_DELIMITER}'\n{body}{_DELIMITER}")
        elif block.kind == "serve":
            lines.append(f"( {body.strip()} ) > runserver.log 2>&1 &")
            lines.append(
                "for _ in $(seq 600); do "
                f"curl -s -o /dev/null http://{address}/.well-known/oauth-authorization-server && break; "
                "sleep 0.1; done"
            )
    return "\n".join(lines) + "\n"
