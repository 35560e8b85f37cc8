"""OpenAI's own OpenAPI spec (../shared/fixtures/spec/openapi.yaml, copied byte for byte) as
the referee of the Response objects and stream events the gateway writes: what the Open
Responses suite and strict clients (zod schemas, generated types) check.

The spec is stricter than OpenAI's own API in a few places (it says `user` and `usage`
are never null; recorded OpenAI traffic has both null). So an object passes when every
error it has is one OpenAI's recorded traffic also has (same event, place and rule), and
it lacks no field the spec requires."""

import json
import re
from functools import lru_cache

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import FIXTURES


@lru_cache(maxsize=1)
def _spec():
    spec = yaml.safe_load((FIXTURES / "spec/openapi.yaml").read_text())
    registry = Registry().with_resource("urn:openai", Resource.from_contents(spec, default_specification=DRAFT202012))
    return spec, registry


@lru_cache(maxsize=None)
def _validator(name):
    _, registry = _spec()
    return Draft202012Validator({"$ref": f"urn:openai#/components/schemas/{name}"}, registry=registry)


@lru_cache(maxsize=1)
def _event_schemas():
    """Stream event `type` → the spec's schema for it."""
    spec, _ = _spec()
    schemas = spec["components"]["schemas"]
    union = schemas["ResponseStreamEvent"]
    out = {}
    for ref in union.get("anyOf", union.get("oneOf", [])):
        name = ref["$ref"].rsplit("/", 1)[1]
        for t in schemas[name].get("properties", {}).get("type", {}).get("enum", []):
            out[t] = name
    return out


def _leaves(e):
    """A oneOf/anyOf error stands for its branches' errors: those of the branch the
    object's `type` selects (branches whose `type` does not match are not its shape)."""
    if e.validator not in ("oneOf", "anyOf") or not e.context:
        yield e
        return
    branches = {}
    for sub in e.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    kept = [subs for subs in branches.values()
            if not any(list(sub.relative_path)[-1:] == ["type"] and sub.validator in ("enum", "const")
                       for sub in subs)]
    if len(kept) != 1:
        yield e
        return
    for sub in kept[0]:
        yield from _leaves(sub)


def _signatures(kind, validator, obj):
    out = set()
    for top in validator.iter_errors(obj):
        for e in _leaves(top):
            path = re.sub(r"\[\d+\]", "[]",
                          "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path))
            detail = e.message if e.validator == "required" else ""
            out.add((kind, path, e.validator, detail))
    return out


def errors(obj):
    """(kind, place, rule, detail) of each way `obj` (a Response, or a stream event)
    breaks the spec."""
    if obj.get("object") == "response":
        return _signatures("response", _validator("Response"), obj)
    kind = obj.get("type")
    name = _event_schemas().get(kind)
    if name is None:
        return {(kind, "", "unknown event", "")}
    return _signatures(kind, _validator(name), obj)


@lru_cache(maxsize=1)
def tolerated():
    """The errors OpenAI's own recorded Responses traffic has."""
    out = set()
    base = FIXTURES / "responses"
    for f in sorted(base.iterdir()):
        objs = []
        if f.suffix == ".jsonl":
            objs = [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
        elif f.suffix == ".sse":
            objs = [json.loads(ln[5:]) for ln in f.read_text().splitlines() if ln.startswith("data:")
                    and ln[5:].strip() not in ("", "[DONE]")]
        elif f.name.endswith(".json") and "request" not in f.name:
            v = json.loads(f.read_text())
            for turn in (v if isinstance(v, list) else [v]):
                body = turn.get("response", {}).get("body", turn) if isinstance(turn, dict) else None
                if isinstance(body, dict):
                    objs.append(body)
        for o in objs:
            if isinstance(o, dict) and (o.get("object") == "response" or "type" in o):
                out |= errors(o)
    return out


def violations(obj):
    """What `obj` breaks that OpenAI's own traffic does not. A missing required field is
    never excused: the older recordings lack fields (`sequence_number`, `logprobs`,
    `cache_write_tokens`) that the current API always sends."""
    excused = {t for t in tolerated() if t[2] != "required"}
    return errors(obj) - excused
