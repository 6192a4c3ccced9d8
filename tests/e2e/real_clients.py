"""The real coding agents (Claude Code, Codex CLI, Gemini CLI), installed from the npm registry into the
git-ignored `.clients/` once (versions pinned in tests/e2e/clients/package.json), and run non-interactively in
a throwaway directory with their own HOME (see docs of each client in tests/e2e/test_*_cli.py)."""
import filecmp
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / ".clients"
PACKAGE = Path(__file__).with_name("clients") / "package.json"
BINARIES = {"claude": "claude", "codex": "codex", "gemini": "gemini"}


def _installed() -> bool:
    return (CLIENTS / "package.json").exists() and filecmp.cmp(PACKAGE, CLIENTS / "package.json", shallow=False) \
        and all((CLIENTS / "node_modules" / ".bin" / b).exists() for b in BINARIES.values())


def ensure_installed() -> Path:
    """The folder of the clients' executables; `npm install` into .clients/ the first time (and whenever the
    pinned versions change). Skips nothing: a machine without npm fails the test, as CI should."""
    if not _installed():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install the real clients (Node.js 20+)")
        CLIENTS.mkdir(exist_ok=True)
        shutil.copyfile(PACKAGE, CLIENTS / "package.json")
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENTS, check=True,
                       timeout=600, capture_output=True)
    return CLIENTS / "node_modules" / ".bin"


@dataclass
class ClientRun:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def run_client(name: str, args: list[str], *, home: Path, env: dict, timeout: float = 180) -> ClientRun:
    """Run one client in `home` (its HOME and working directory), with a clean environment plus `env`."""
    binary = ensure_installed() / BINARIES[name]
    home.mkdir(parents=True, exist_ok=True)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "NO_COLOR": "1", "CI": "1", "TERM": "dumb"}
    done = subprocess.run([str(binary), *args], cwd=home, env={**base, **env}, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return ClientRun(done.returncode, done.stdout, done.stderr)
