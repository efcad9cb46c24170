"""Command lines that a project documents for its own scripts.

Research repositories say how their models are meant to be built in their shell
scripts and READMEs, not in code: ``python cifar.py -a resnet --depth 110`` in
TRAINING.md, ``python train.py --net_type resnet --dataset imagenet --depth 50`` in a
``run.sh``. When a script's option defaults do not build a model (``--depth 29`` fails
the ResNet's depth check, ``--arch`` defaults to a name no registry call selects),
the values of those command lines are values that appear in the project: the planner
(bnlint.model.plan) resolves the script's calls again with them.

:func:`find_command_lines` reads the text files below the project root (shell
scripts, Markdown, reStructuredText, plain text and Makefiles) for invocations of a
project script: ``python[3] [interpreter flags] path/to/script.py ARGS``, ``python -m
package.module ARGS``, and the same through a launcher (``torchrun``, ``python -m
torch.distributed.launch``, ``accelerate launch``, ``deepspeed``), with backslash
continuations, shell prompts and Markdown backticks. :func:`parse_options` reads
one command line's arguments against the script's argparse options as argparse
would (long and short flags, ``--flag=value``, unambiguous prefixes, ``nargs``); a
command line with a flag the script does not declare is out of date and is not used.
Values that the shell would compute (``$DEPTH``, ``<depth>``) stay unknown: a call
that reads them does not resolve.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

__all__ = ["CommandLine", "UNKNOWN", "DOC_SUFFIXES", "is_doc_file", "find_command_lines", "parse_options"]

DOC_SUFFIXES = (".sh", ".bash", ".zsh", ".md", ".markdown", ".rst", ".txt")
DOC_NAMES = ("Makefile", "makefile", "GNUmakefile")
MAX_DOC_BYTES = 512 * 1024  # a larger text file is data, not documentation
MAX_TXT_BYTES = 64 * 1024  # .txt files are often lists of samples
MAX_DOC_FILES = 2000
MAX_TOTAL_BYTES = 16 * 1024 * 1024  # what one project's documents may cost to read

# the start of an invocation: an interpreter or a launcher, as a word of its own
_START = re.compile(r"(?<![\w./-])(?:python(?:\d+(?:\.\d+)?)?|torchrun|deepspeed|accelerate\s+launch)(?=\s)")
# tokens that end a command
_SEPARATORS = {";", "&&", "||", "|", "&", ">", ">>", "2>", "2>&1", "1>", "<", ")"}
# interpreter flags that take a value
_PYTHON_VALUE_FLAGS = {"-W", "-X", "-c"}


class _Unknown:
    """A value the shell computes (``$DEPTH``): not known statically."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class CommandLine:
    doc: str  # the absolute path of the text file it is written in
    line: int  # its first line there (1-based)
    script: str  # the absolute path of the project script it runs
    argv: Tuple[str, ...]  # the script's arguments
    text: str  # the command as written, on one line

    def where(self, root: str) -> str:
        return f"{os.path.relpath(self.doc, root)}:{self.line}"


def is_doc_file(name: str) -> bool:
    return name.endswith(DOC_SUFFIXES) or name in DOC_NAMES


def _logical_lines(text: str) -> Iterator[Tuple[int, str]]:
    """(first line number, line) with backslash continuations joined."""
    pending: List[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        yield start, " ".join(part.strip() for part in pending)
        pending = []
    if pending:
        yield start, " ".join(part.strip() for part in pending)


def _tokens(text: str) -> Optional[List[str]]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unclosed quote
        return None


def _script_of(tokens: List[str], resolve: Callable[[str, bool], Optional[str]]
               ) -> Optional[Tuple[str, List[str]]]:
    """(the project script, its arguments) of one invocation's tokens (the interpreter
    or launcher first), or None when it runs no project script."""
    i = 1
    if tokens and tokens[0] == "accelerate":
        i = 2
    while i < len(tokens) and tokens[i] not in _SEPARATORS:
        tok = tokens[i]
        if tok == "-m" and i + 1 < len(tokens):
            module = tokens[i + 1]
            script = resolve(module, True)
            if script is not None:
                return script, tokens[i + 2:]
            i += 2  # a launcher module (torch.distributed.launch): its script follows
            continue
        if tok.endswith(".py") and not tok.startswith("-"):
            script = resolve(tok, False)
            return (script, tokens[i + 1:]) if script is not None else None
        if tok in _PYTHON_VALUE_FLAGS:
            i += 1
        i += 1
    return None


def find_command_lines(root: str, docs: Sequence[str], scripts: Sequence[str],
                       read: Callable[[str], Optional[bytes]]) -> List[CommandLine]:
    """Every invocation of one of ``scripts`` (absolute paths of the project's ``.py``
    files) written in the text files ``docs``, in file then line order."""
    script_set = set(scripts)
    by_name: Dict[str, List[str]] = {}
    for path in scripts:
        by_name.setdefault(os.path.basename(path), []).append(path)
    out: List[CommandLine] = []
    budget = MAX_TOTAL_BYTES
    for doc in docs[:MAX_DOC_FILES]:
        try:
            size = os.path.getsize(doc)
        except OSError:
            continue
        if size > (MAX_TXT_BYTES if doc.endswith(".txt") else MAX_DOC_BYTES) or size > budget:
            continue
        budget -= size
        data = read(doc)
        if not data or b"python" not in data and b"torchrun" not in data \
                and b"deepspeed" not in data and b"accelerate" not in data:
            continue
        text = data.decode("utf-8", "replace")
        folder = os.path.dirname(doc)

        def resolve(token: str, module: bool) -> Optional[str]:
            if module:
                if not re.fullmatch(r"[A-Za-z_][\w.]*", token):
                    return None
                rel = token.replace(".", os.sep)
                candidates = [os.path.join(base, rel + ".py") for base in (root, folder)]
            else:
                candidates = [os.path.normpath(os.path.join(base, os.path.expanduser(token)))
                              for base in (folder, root)]
            for c in candidates:
                if os.path.abspath(c) in script_set:
                    return os.path.abspath(c)
            if not module and os.path.basename(token) == token:
                # ``cd src && python train.py``: the one project script of that name
                same = by_name.get(token, [])
                if len(same) == 1:
                    return same[0]
            return None

        for number, line in _logical_lines(text):
            for m in _START.finditer(line):
                rest = line[m.start():]
                if line[:m.start()].count("`") % 2:  # inline code: `python train.py --depth 40`
                    rest = rest.split("`", 1)[0]
                rest = rest.replace("`", " ")
                tokens = _tokens(rest)
                if not tokens:
                    continue
                found = _script_of(tokens, resolve)
                if found is None:
                    continue
                script, argv = found
                end = next((k for k, t in enumerate(argv) if t in _SEPARATORS), len(argv))
                argv = argv[:end]
                out.append(CommandLine(doc, number, script, tuple(argv),
                                       " ".join([tokens[0]] + [os.path.relpath(script, root)] + list(argv))))
                break  # one invocation per line
    return out


def _convert(values: List[str], typ: Optional[str]) -> object:
    out = []
    for v in values:
        if "$" in v or "`" in v or (v.startswith("<") and v.endswith(">")) or ("{" in v and "}" in v):
            return UNKNOWN
        if typ in (None, "str"):
            out.append(v)
        elif typ in ("int", "float"):
            try:
                out.append(int(v) if typ == "int" else float(v))
            except ValueError:
                return UNKNOWN
        else:  # a function of the script's (``str2bool``): not run statically
            return UNKNOWN
    return out


def parse_options(argv: Sequence[str], flags: Mapping[str, Tuple[str, str]],
                  options: Mapping[str, Tuple[Optional[str], Optional[str], Optional[str]]]
                  ) -> Optional[Dict[str, object]]:
    """The options one command line sets: dest -> value (as argparse would convert it;
    UNKNOWN where the shell computes it). None when a flag is not the script's (the
    command line is out of date, or meant for another parser). Positional arguments
    are left out."""
    longs = [f for f in flags if f.startswith("--")]
    out: Dict[str, object] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if not tok.startswith("-") or tok == "-" or _is_number(tok):
            continue  # a positional argument
        if tok == "--":
            break
        flag, eq, attached = tok.partition("=")
        if flag not in flags and flag.startswith("--"):
            prefixed = [f for f in longs if f.startswith(flag)]
            if len({flags[f][0] for f in prefixed}) != 1:
                return None
            flag = prefixed[0]
        if flag not in flags:
            return None
        dest, arity = flags[flag]
        default, typ, action = options.get(dest, (None, None, None))
        if arity == "0":
            if action in ("store_true", "store_false"):
                out[dest] = action == "store_true"
            else:
                out[dest] = UNKNOWN
            continue
        values: List[str] = [attached] if eq else []
        wanted = None if arity in ("+", "*", "?") else int(arity) if arity.isdigit() else 1
        while i < len(argv) and (wanted is None or len(values) < wanted) and not eq:
            nxt = argv[i]
            if nxt.startswith("-") and not _is_number(nxt):
                break
            values.append(nxt)
            i += 1
            if arity == "?":
                break
        if wanted is not None and len(values) != wanted:
            return None
        value = _convert(values, typ)
        if value is UNKNOWN:
            out[dest] = UNKNOWN
        elif arity in ("1", "?") and len(values) == 1 and not action == "append":
            out[dest] = value[0]  # type: ignore[index]
        elif arity == "?" and not values:
            out[dest] = UNKNOWN  # its const
        else:
            out[dest] = value
    return out


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False
