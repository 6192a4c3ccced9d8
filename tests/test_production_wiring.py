"""The benchmark's bare relay stays out of production: not a URL, not an ASGI prefix, not imported, not installed."""
import ast
import tomllib
from pathlib import Path

from django.urls import URLPattern, URLResolver, get_resolver

ROOT = Path(__file__).resolve().parent.parent


def _routes(resolver, prefix=""):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry, route)
        else:
            assert isinstance(entry, URLPattern)
            yield route


def _imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_production_urlconf_has_no_bare_relay():
    production = list(_routes(get_resolver("gateway_site.urls")))
    assert "v1/chat/completions" in production  # the walk sees the relay's routes
    assert not [r for r in production if r.lstrip("^").startswith("bare")]
    assert get_resolver("gateway_site.urls").resolve("/v1/chat/completions")
    # …while the bench's URLconf is the production one plus the bare relay.
    bench = list(_routes(get_resolver("bench.urls")))
    assert "bare/v1/chat/completions" in bench
    assert set(bench) - set(production) == {"bare/v1/chat/completions"}


def test_production_asgi_prefixes_have_no_bare_relay():
    # Read, not imported: importing gateway_site.asgi builds the application and freezes the collector.
    tree = ast.parse((ROOT / "gateway_site" / "asgi.py").read_text())
    prefixes = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) == "RELAY_PREFIXES" for t in node.targets))
    assert "/v1/" in prefixes
    assert not [p for p in prefixes if p.startswith("/bare")]


def test_nothing_under_gateway_site_imports_bench():
    files = sorted((ROOT / "gateway_site").rglob("*.py"))
    assert len(files) > 5
    offenders = {str(f.relative_to(ROOT)): m for f in files for m in _imported_modules(f)
                 if m == "bench" or m.startswith("bench.")}
    assert offenders == {}
    # Nor does any setting name the bench (its settings module is bench.settings, chosen by bench/run).
    assert "bench" not in (ROOT / "gateway_site" / "settings.py").read_text().lower()


def test_bench_and_simulator_are_not_installed_packages():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "gateway_site*" in include
    assert not [p for p in include if p.startswith(("bench", "simulator"))]
