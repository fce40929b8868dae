"""Read the values a Jitsi web container rendered into /config.js.

The file is JavaScript: `var config = {...};` plus `config.a.b = <expr>;` assignments, where
expressions are literals, objects, arrays and `'a' + subdir + 'b'` concatenations (unknown
identifiers such as nginx's `subdir` count as ''). This reads that subset, nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<str>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|`(?:\\.|[^`\\])*`)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[{}\[\](),:;=.+])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "'": "'", '"': '"', "\\": "\\", "/": "/"}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup or "other"
        if kind != "ws":
            yield kind, match.group()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = list(_tokens(text))
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("eof", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value:
            self.pos += 1
            return True
        return False

    def skip_statement(self) -> None:
        depth = 0
        while self.peek()[0] != "eof":
            _, value = self.take()
            if value in "{[(":
                depth += 1
            elif value in "}])":
                depth -= 1
                # A block statement (if/for/function) ends with its closing brace.
                if value == "}" and depth <= 0:
                    return
            elif value == ";" and depth <= 0:
                return

    def expression(self) -> Any:
        value = self.primary()
        while self.accept("+"):
            right = self.primary()
            value = f"{'' if value is None else value}{'' if right is None else right}"
        return value

    def primary(self) -> Any:  # noqa: PLR0911, PLR0912 - one branch per JS literal kind
        kind, value = self.take()
        if kind == "str":
            return _unescape(value[1:-1])
        if kind == "num":
            return float(value) if "." in value else int(value)
        if value == "{":
            return self.object_body()
        if value == "[":
            items = []
            while not self.accept("]"):
                items.append(self.expression())
                self.accept(",")
            return items
        if value == "(":
            inner = self.expression()
            self.accept(")")
            return inner
        if kind == "name":
            if value in ("true", "false"):
                return value == "true"
            if value in ("null", "undefined"):
                return None
            # A dotted reference or call we cannot evaluate: skip its tail, treat it as ''.
            while self.peek()[1] == ".":
                self.take()
                self.take()
            if self.peek()[1] == "(":
                depth = 0
                while self.peek()[0] != "eof":
                    _, v = self.take()
                    depth += v == "("
                    depth -= v == ")"
                    if depth == 0:
                        break
            return ""
        return None

    def object_body(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while not self.accept("}"):
            kind, key = self.take()
            if kind == "eof":
                break
            if kind == "str":
                key = _unescape(key[1:-1])
            self.accept(":")
            result[key] = self.expression()
            self.accept(",")
        return result


def _assign(root: dict[str, Any], path: list[str], value: Any) -> None:
    node = root
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def parse_config_js(text: str) -> dict[str, Any]:
    """The `config` object a browser would end up with (for the subset described above)."""
    parser = _Parser(text)
    config: dict[str, Any] = {}
    while parser.peek()[0] != "eof":
        start = parser.pos
        if parser.accept("var") or parser.accept("let") or parser.accept("const"):
            _, name = parser.take()
            if name == "config" and parser.accept("="):
                value = parser.expression()
                if isinstance(value, dict):
                    config.update(value)
            parser.skip_statement()
            continue
        if parser.peek()[1] == "config":
            parser.take()
            path = []
            while parser.accept("."):
                path.append(parser.take()[1])
            if path and parser.accept("="):
                _assign(config, path, parser.expression())
        if parser.pos == start:
            parser.take()
        parser.skip_statement()
    return config


def lookup(config: dict[str, Any], dotted: str) -> Any:
    """`lookup(cfg, 'hosts.domain')`; None when any part is missing."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
