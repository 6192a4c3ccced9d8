"""Layers import downward only: core → accounts → keys → routing → billing → support → routing/relay (the top).

Read from the source (every import statement, function-level ones included), so a lazy import that climbs a
layer fails here instead of in review."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ["core", "gateway_site", "accounts", "keys", "routing", "billing", "support"]


def _modules_imported(path: Path) -> set[str]:
    """Every module a file imports, as dotted names (`from a import b` counts as both `a` and `a.b`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def _importers(files: list[Path], package: str, root: Path = ROOT) -> list[str]:
    return [f"{path.relative_to(root)}: {name}" for path in files for name in sorted(_modules_imported(path))
            if name == package or name.startswith(package + ".")]


def test_the_walk_sees_the_imports_it_must_refuse(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import support.models\n\ndef late():\n    from routing import relay\n"
                      "    from support.api import errors\n")
    assert _importers([sample], "support", tmp_path) == [
        "sample.py: support.api", "sample.py: support.api.errors", "sample.py: support.models"]
    assert _importers([sample], "routing.relay", tmp_path) == ["sample.py: routing.relay"]
    assert _importers([sample], "routing.relay.views", tmp_path) == []


@pytest.mark.parametrize("package", ["routing", "billing", "keys", "accounts"])
def test_the_apps_below_support_never_import_it(package):
    assert _sources(package), package
    assert _importers(_sources(package), "support") == []


def test_accounts_never_imports_billing():
    """The budget alerts banner comes from billing's context processor, not from accounts' render."""
    assert _importers(_sources("accounts"), "billing") == []


def test_core_imports_no_app():
    found = [line for app in APPS if app != "core" for line in _importers(_sources("core"), app)]
    assert found == []


def test_nothing_below_the_relay_imports_it():
    relay = ROOT / "routing" / "relay"
    # The wiring above everything: the URL table and the ASGI entry (which answers an unreadable body in the
    # relay's error format) put the relay in place; nothing else below it may import it.
    wiring = {ROOT / "gateway_site" / "urls.py", ROOT / "gateway_site" / "console_urls.py",
              ROOT / "gateway_site" / "asgi.py"}
    files = [p for p in _sources(*APPS) if relay not in p.parents and p not in wiring]
    assert ROOT / "routing" / "probes.py" in files
    assert _importers(files, "routing.relay") == []
