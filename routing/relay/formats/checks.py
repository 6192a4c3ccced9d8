"""Field checks both inbound formats share: types (a wrong type is a 400 naming the field, never a 500 further
down), integer ranges, and the relay's JSON depth limit.

The depth limit: a body nested deeper than MAX_DEPTH arrays/objects is refused (400 `invalid_value` naming
the top-level field). The JSON parser accepts up to 1,024 levels, but re-encoding for the upstream stops at
255 and no chat or messages request needs more than a few dozen (tool schemas included)."""
from routing.relay import errors

MAX_DEPTH = 64
MAX_TOKENS = 2**31 - 1          # token counts and `n`: anything above is no real request
MAX_INT64 = 2**63 - 1           # `seed`
_NAMES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array",
          dict: "an object"}
NUMBER = (int, float)


def type_error(field: str, value, expected: str) -> errors.RelayError:
    got = _NAMES.get(type(value), "null" if value is None else type(value).__name__)
    return errors.RelayError(400, "invalid_request_error", "invalid_type",
                             f"Invalid type for '{field}': expected {expected}, but got {got} instead.", param=field)


def of_type(field: str, value, types: tuple, expected: str):
    """`value` if it is one of `types` (a boolean is not a number); else the 400."""
    if not isinstance(value, types) or (type(value) is bool and bool not in types):
        raise type_error(field, value, expected)
    return value


def optional(obj: dict, key: str, types: tuple, expected: str, field: str | None = None):
    """obj[key] when present and not null, type-checked; None otherwise."""
    value = obj.get(key)
    if value is None:
        return None
    return of_type(field or key, value, types, expected)


def integer(obj: dict, key: str, lo: int, hi: int, field: str | None = None) -> int | None:
    value = optional(obj, key, (int,), "an integer", field)
    if value is not None and not lo <= value <= hi:
        raise errors.invalid_value(field or key, f"expected an integer from {lo} to {hi}.")
    return value


def number(obj: dict, key: str, field: str | None = None):
    return optional(obj, key, NUMBER, "a number", field)   # JSON has no NaN or infinity: orjson refuses them


def strings(obj: dict, key: str, *, single: bool, field: str | None = None) -> None:
    """A list of strings (or, when `single`, a string as well)."""
    field = field or key
    value = obj.get(key)
    if value is None or (single and isinstance(value, str)):
        return
    expected = "a string or an array of strings" if single else "an array of strings"
    of_type(field, value, (list,), expected)
    for i, item in enumerate(value):
        of_type(f"{field}[{i}]", item, (str,), "a string")


def objects(field: str, value) -> list:
    """An array whose every item is an object."""
    of_type(field, value, (list,), "an array")
    for i, item in enumerate(value):
        of_type(f"{field}[{i}]", item, (dict,), "an object")
    return value


def depth(payload: dict, limit: int = MAX_DEPTH) -> None:
    """Refuse a body nested deeper than `limit` (walked iteratively: no recursion to exhaust)."""
    for key, value in payload.items():
        if not isinstance(value, (dict, list)):
            continue
        stack = [(value, 2)]
        while stack:
            node, level = stack.pop()
            if level > limit:
                raise errors.invalid_value(str(key), f"nested deeper than {limit} levels (the relay's limit).")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))


def fallback(payload: dict) -> dict:
    """OpenRouter's ordered fallback list, for any format's canonical request: `models: [..]` (an array of
    model ids) and the legacy `route: "fallback"` (the only value it ever had), checked; {"models": [...]} to
    merge into the canonical request, or {}. OpenRouter's `provider` preferences travel along too (the router
    checks and applies them, routing/relay/provider_prefs.py)."""
    strings(payload, "models", single=False)
    route = optional(payload, "route", (str,), "a string")
    if route is not None and route != "fallback":
        raise errors.invalid_value("route", 'the only routing value is "fallback" (with `models`: an ordered '
                                            "fallback list).")
    out = {"models": payload["models"]} if payload.get("models") else {}
    if payload.get("provider") is not None:
        out["provider"] = payload["provider"]
    return out
