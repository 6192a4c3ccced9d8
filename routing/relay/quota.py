"""Every limit that applies to a request, as checks for billing.limits: the key's and its group's budgets
and rates, the route's budget, the team's monthly cap and its balance. The tightest wins; the same for
every inbound route (they all come through RelayCall)."""
import datetime as dt
import time

from django.conf import settings

from billing import limits
from billing.money import combined_multiplier, format_money, usage_cost
from routing import tokens
from routing.relay import errors

PERIOD_WORDS = {"day": "daily", "week": "weekly", "month": "monthly", "none": "total"}
Metric, Scope = limits.Metric, limits.Scope


def _money(micro: int) -> str:
    return format_money(micro, settings.TOLLGATE_CURRENCY)


def _budget(scope: limits.Scope, scope_key: str, label: str, limit: int, period: str, worst: int,
            now: dt.datetime, *, team_id: int, field: str | None, ident) -> limits.Check:
    start, end = limits.period_start(period, now), limits.period_end(period, now)
    tag = limits.period_tag(period, now)
    return limits.Check(
        "budget", f"tg:spent:{scope_key}:{tag}", limit, worst, aux=f"tg:held:{scope_key}",
        label=f"{label} {PERIOD_WORDS.get(period, period)} budget of {_money(limit)}",
        metric=Metric.MONEY, scope=scope,
        source=limits.Source(team_id, field, ident, start.timestamp() if start else None,
                             end.timestamp() if end else None),
        reset=f"it resets at {end:%Y-%m-%d %H:%M} UTC" if end else "it does not reset; raise the limit")


def _output_of(model, wanted: int) -> int:
    """No model writes more than its output limit, whatever max_tokens asks (Claude Code asks 128000)."""
    return min(wanted, model.max_output_tokens) if model is not None and model.max_output_tokens else wanted


def _worst_cost(price, prompt: int, output: int, multiplier: int) -> int:
    """The most the call can cost: all of the output, and the prompt at its dearest (plain input, or written
    to the prompt cache, which Anthropic prices at up to 2x input for a 1-hour write). The cost grows with the
    prompt's rate, so one usage_cost at the dearest rate is the max of the three."""
    field, dearest = None, price.input_per_m
    for name, rate in (("cache_write_5m_tokens", getattr(price, "cache_write_5m_per_m", None)),
                       ("cache_write_1h_tokens", getattr(price, "cache_write_1h_per_m", None))):
        if rate is not None and rate > dearest:
            field, dearest = name, rate
    return usage_cost(prompt_tokens=prompt, completion_tokens=output, cached_tokens=0, price=price,
                      multiplier_ppm=multiplier, **({field: prompt} if field else {}))


def build(call, request: dict) -> tuple[list[limits.Check], int, int, int]:
    """Returns (checks, worst-case cost, minimum cost, estimated tokens)."""
    ctx, snap = call.ctx, call.snap
    now = dt.datetime.now(dt.UTC)
    minute = int(time.time() // 60)
    prompt = call.prompt_estimate(request)
    output = tokens.max_output_tokens(request, settings.TOLLGATE_DEFAULT_OUTPUT_ALLOWANCE)
    model = call.model
    policy = snap.policy(ctx.team_id)
    multiplier = combined_multiplier(policy.multiplier_ppm, ctx.group_multiplier_ppm)
    worst = minimum = 0
    price = snap.price_for(model, ctx.team_id)
    if price is not None:
        worst = _worst_cost(price, prompt, _output_of(model, output), multiplier)
        minimum = usage_cost(prompt_tokens=prompt, completion_tokens=0, cached_tokens=0, price=price,
                             multiplier_ppm=multiplier)
    # The hold covers the most expensive candidate that may serve (every planned model and the downgrade), so
    # a fallback to a pricier backup cannot spend past a budget; the minimum stays the first candidate's.
    plan = call.route_plan
    for candidate in (plan.models + [plan.downgrade]) if plan is not None else ():
        if candidate is None or candidate is model:
            continue
        price = snap.price_for(candidate, ctx.team_id)
        if price is not None:
            worst = max(worst, _worst_cost(price, prompt, _output_of(candidate, output), multiplier))
    checks: list[limits.Check] = []
    for scope, prefix, label, lim, ident, field in (
            (Scope.KEY, "key", f"key '{ctx.name}'", ctx.key_limits, ctx.key_id, "api_key_id"),
            (Scope.GROUP, "group", f"key group '{ctx.group_name}'", ctx.group_limits, ctx.group_id,
             "api_key__group_id")):
        if lim.rpm:
            checks.append(limits.Check("rate", f"tg:rpm:{prefix}:{ident}:{minute}", lim.rpm, 1,
                                       label=f"{label} limit of {lim.rpm} requests per minute",
                                       metric=Metric.REQUESTS, scope=scope))
        if lim.tpm:
            checks.append(limits.Check("rate", f"tg:tpm:{prefix}:{ident}:{minute}", lim.tpm, prompt + output,
                                       label=f"{label} limit of {lim.tpm} tokens per minute",
                                       metric=Metric.TOKENS, scope=scope))
        if lim.concurrency:
            checks.append(limits.Check("conc", f"tg:cc:{prefix}:{ident}", lim.concurrency, 1,
                                       label=f"{label} limit of {lim.concurrency} concurrent requests",
                                       metric=Metric.CONCURRENCY, scope=scope))
        if lim.budget is not None:
            checks.append(_budget(scope, f"{prefix}:{ident}", label, lim.budget, lim.period, worst, now,
                                  team_id=ctx.team_id, field=field, ident=ident))
    rule = call.route_rule
    if rule is not None and rule.budget_limit is not None:
        checks.append(_budget(Scope.ROUTE, f"route:{ctx.team_id}:{rule.name}", f"route '{rule.name}'",
                              rule.budget_limit, rule.budget_period, worst, now, team_id=ctx.team_id,
                              field="route__in", ident=limits.route_names(rule.name)))
    if policy.monthly_cap is not None:
        checks.append(_budget(Scope.TEAM, f"team:{ctx.team_id}", "team", policy.monthly_cap, "month", worst, now,
                              team_id=ctx.team_id, field=None, ident=None))
    checks.append(limits.Check("balance", limits.balance_key(ctx.team_id), 0, worst,
                               aux=f"tg:held:team:{ctx.team_id}", label="team balance",
                               metric=Metric.MONEY, scope=Scope.BALANCE, source=limits.Source(ctx.team_id)))
    return checks, worst, minimum, prompt + _output_of(model, output)


def refusal(exc: limits.LimitExceeded, minimum: int) -> errors.RelayError:
    check = exc.check
    if check.metric is not Metric.MONEY:
        retry = 1 if check.metric is Metric.CONCURRENCY else 60 - int(time.time()) % 60
        return errors.RelayError(
            429, "rate_limit_error", "rate_limit_exceeded",
            f"Rate limit reached: the {check.label} is used up. Retry after {retry} s, or ask a team admin "
            "to raise it.", headers={"Retry-After": str(retry)},
            metadata={"limit_source": check.scope.value if check.scope else None})
    if check.scope is Scope.BALANCE:
        return errors.RelayError(
            402, "insufficient_quota", "insufficient_quota",
            f"The team balance cannot cover this request: it needs at least {_money(minimum)} and "
            f"{_money(max(exc.left, 0))} is available (after requests in flight). Top up or redeem a code.",
            metadata={"limit_source": check.scope.value})
    return errors.RelayError(
        402, "insufficient_quota", "insufficient_quota",
        f"The {check.label} is used up ({_money(max(exc.left, 0))} left, this request needs at least "
        f"{_money(minimum)}); {check.reset}.",
        metadata={"limit_source": check.scope.value if check.scope else None})


_RATE_METRICS = tuple((metric, metric.value) for metric in (Metric.REQUESTS, Metric.TOKENS))


def rate_headers(checks: list[limits.Check], used: list[int]) -> dict:
    """x-ratelimit-* headers from the tightest request and token limits that apply."""
    headers = {}
    reset = f"{60 - int(time.time()) % 60}s"
    for metric, suffix in _RATE_METRICS:
        tightest = None
        for check, count in zip(checks, used):
            if check.metric is metric:
                remaining = max(check.limit - count, 0)
                if tightest is None or remaining < tightest[1]:
                    tightest = (check.limit, remaining)
        if tightest:
            headers[f"x-ratelimit-limit-{suffix}"] = str(tightest[0])
            headers[f"x-ratelimit-remaining-{suffix}"] = str(tightest[1])
            headers[f"x-ratelimit-reset-{suffix}"] = reset
    return headers
