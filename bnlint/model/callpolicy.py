"""Which module-level calls may run when bnlint imports a model file's definitions:
the deny list of calls that do I/O, training, downloads or process control, resolved
through the file's imports and the file's own functions (pure AST work)."""
from __future__ import annotations

import ast
from typing import Dict, Iterator, Optional, Sequence

from bnlint.model.toplevel_names import dotted

__all__ = ["DENIED_NAMES", "DENIED_ROOTS", "DENIED_PREFIXES", "CallPolicy", "walk_top"]

# A call whose last name is one of these does I/O, trains, downloads or controls
# processes: it never runs at import, nor does anything that reads what it binds.
DENIED_NAMES = frozenset({
    "open", "makedirs", "mkdir", "mkdtemp", "save", "savez", "savez_compressed", "savetxt",
    "save_image", "savefig", "dump", "write", "writelines", "write_text", "write_bytes", "touch",
    "download", "download_url", "urlretrieve", "urlopen", "fit", "train", "main", "run",
    "system", "popen", "Popen", "call", "check_call", "check_output", "remove", "unlink", "rmtree",
    "rename", "copyfile", "copytree", "copy2", "move", "load", "load_state_dict", "loadtxt",
    "fromfile", "read_csv", "imread", "listdir", "scandir", "walk", "glob", "init_process_group",
    "spawn", "launch", "SummaryWriter", "FileHandler", "basicConfig", "chdir", "exit", "quit",
    "input", "sleep", "fork", "kill", "backward", "step", "merge_from_file", "from_pretrained",
})

# Calls into these packages (by the first part of the dotted name the file's imports
# resolve to) never run at import either.
DENIED_ROOTS = frozenset({
    "subprocess", "shutil", "socket", "requests", "httpx", "urllib", "urllib3", "http", "ftplib",
    "wandb", "mlflow", "neptune", "comet_ml", "tensorboardX", "multiprocessing", "webbrowser",
    "pickle", "joblib", "h5py", "lmdb", "boto3", "gdown", "kaggle", "huggingface_hub", "datasets",
    "tempfile", "signal", "threading", "asyncio", "sqlite3", "smtplib", "visdom",
})
DENIED_PREFIXES = (
    "torch.distributed", "torch.multiprocessing", "torch.hub", "torch.utils.tensorboard",
    "torch.utils.model_zoo", "torchvision.datasets", "torchvision.io", "torch.cuda.set_device",
)
# os.* does I/O and process control except for these.
_OS_ALLOWED = ("os.path", "os.environ", "os.getenv", "os.cpu_count", "os.getcwd", "os.getpid", "os.fspath",
               "os.sep")

def _immediate_calls(node: ast.AST) -> Iterator[ast.Call]:
    """Calls evaluated when ``node`` runs (not those inside function bodies or lambdas)."""
    if isinstance(node, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return
    if isinstance(node, ast.Call):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _immediate_calls(child)


class CallPolicy:
    """Decides which calls are denied, resolving names through the file's imports and
    looking into the file's own functions (a helper that writes a file is denied too)."""

    def __init__(self, tree: ast.Module):
        self.aliases: Dict[str, str] = {}
        self.functions: Dict[str, ast.AST] = {}
        for stmt in walk_top(tree.body):
            if isinstance(stmt, ast.Import):
                for a in stmt.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                for a in stmt.names:
                    if a.name != "*":
                        self.aliases[a.asname or a.name] = f"{stmt.module}.{a.name}"
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[stmt.name] = stmt
            elif isinstance(stmt, ast.ClassDef):
                init = [s for s in stmt.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and s.name in ("__init__", "__new__", "__post_init__")]
                self.functions[stmt.name] = ast.Module(body=init, type_ignores=[])
        self._verdicts: Dict[str, Optional[str]] = {}
        # Names bound by ``import x`` / ``import x.y as z``: modules, not the file's objects.
        self.module_names = frozenset(
            (a.asname or a.name.split(".")[0]) for stmt in walk_top(tree.body) if isinstance(stmt, ast.Import)
            for a in stmt.names
        )

    def resolve(self, dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        full = self.aliases.get(head)
        if full is None:
            return dotted
        return f"{full}.{rest}" if rest else full

    def why_denied(self, call: ast.Call) -> Optional[str]:
        """The reason this call may not run at import, or None."""
        for kw in call.keywords:
            if kw.arg == "download" and not (isinstance(kw.value, ast.Constant) and not kw.value.value):
                return "it downloads"
        written = dotted(call.func)
        if written is None:
            return None
        name = self.resolve(written)
        last = name.rsplit(".", 1)[-1]
        if last in DENIED_NAMES:
            return f"it calls {last}()"
        root = name.split(".")[0]
        if root in DENIED_ROOTS:
            return f"it calls {root}"
        if any(name == p or name.startswith(p + ".") for p in DENIED_PREFIXES):
            return f"it calls {name}"
        if root == "os" and "." in name and not name.startswith(_OS_ALLOWED):
            return f"it calls {name}"
        if "." not in written and written in self.functions:
            return self._function_verdict(written)
        return None

    def _function_verdict(self, name: str) -> Optional[str]:
        if name in self._verdicts:
            return self._verdicts[name]
        self._verdicts[name] = None  # recursion guard
        verdict = None
        for node in ast.walk(self.functions[name]):
            if isinstance(node, ast.Call):
                why = self.why_denied(node)
                if why is not None:
                    verdict = f"{name}() does I/O ({why.replace('it calls ', 'calls ')})"
                    break
        self._verdicts[name] = verdict
        return verdict

    def statement_denied(self, node: ast.AST) -> Optional[str]:
        for call in _immediate_calls(node):
            why = self.why_denied(call)
            if why is not None:
                return why
        return None


def walk_top(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """Top-level statements, looking into if/try blocks."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from walk_top(stmt.body)
            yield from walk_top(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            yield from walk_top(stmt.body)
            for h in stmt.handlers:
                yield from walk_top(h.body)
            yield from walk_top(stmt.orelse)
            yield from walk_top(stmt.finalbody)


