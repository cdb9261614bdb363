"""examples/serve.yaml documents every key the gateway's config reader accepts, and loads."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from wattserve.serve.config import ServeConfig, load_config
from wattserve.serve.ray_config import RayConfig, split_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "serve.yaml"
# a commented-out key: "# key: value" or "# - key: value" (a list item), at any indentation,
# behind one or more "#"
_COMMENTED_KEY = re.compile(r"^(\s*)# ?((?:\s*# ?)*\s*(?:- )?[A-Za-z_][\w./-]*:(?:\s|$).*)$")

# keys read from the document before validation (ServeConfig._older_spellings)
OLDER_TOP_LEVEL = {"max_body_bytes"}


def uncomment(text: str, once: bool = False) -> str:
    """``text`` with its commented-out keys made live (all levels unless ``once``)."""
    while True:
        out = "\n".join(_COMMENTED_KEY.sub(r"\1\2", line) for line in text.splitlines())
        if once or out == text:
            return out
        text = out


def _models_in(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The pydantic models an annotation holds: ``("", M)`` for ``M``/``M | None``,
    ``("[]", M)`` for ``list[M]``, ``(".*", M)`` for ``dict[str, M]``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    if origin is list and args:
        return [("[]" + s, m) for s, m in _models_in(args[0])]
    if origin is dict and len(args) == 2:
        return [(".*" + s, m) for s, m in _models_in(args[1])]
    return [pair for a in args for pair in _models_in(a)]


def schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path a config model accepts, e.g. ``models[].replicas[].kind``."""
    keys = set()
    for name, field in model.model_fields.items():
        path = prefix + name
        keys.add(path)
        for suffix, sub in _models_in(field.annotation):
            keys |= schema_keys(sub, path + suffix + ".")
    return keys


def document_keys(doc: Any, prefix: str = "", maps: frozenset[str] = frozenset()) -> set[str]:
    """Every key path in a parsed document; the values of the mappings named in ``maps``
    (keyed by user names, like ``ray.engines``) are folded into ``*``."""
    keys: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            path = prefix + str(k)
            keys.add(path)
            if path in maps:
                for item in v.values():
                    keys |= document_keys(item, path + ".*.", maps)
            else:
                keys |= document_keys(v, path + ".", maps)
    elif isinstance(doc, list):
        for item in doc:
            keys |= document_keys(item, prefix.rstrip(".") + "[].", maps)
    return keys


def _leaf_keys(model: type[BaseModel], prefix: str) -> set[str]:
    """Keys whose values are free-form mappings (their own keys are not config keys)."""
    out = set()
    for name, field in model.model_fields.items():
        path = prefix + name
        ann = field.annotation
        dicts = [a for a in (ann, *typing.get_args(ann)) if typing.get_origin(a) is dict]
        if dicts and not _models_in(ann):
            out.add(path)
        for suffix, sub in _models_in(ann):
            out |= _leaf_keys(sub, path + suffix + ".")
    return out


def _documented() -> set[str]:
    doc = yaml.safe_load(uncomment(EXAMPLE.read_text(encoding="utf-8")))
    found = document_keys(doc, maps=frozenset({"ray.engines"}))
    free = _leaf_keys(ServeConfig, "") | _leaf_keys(RayConfig, "ray.")
    found = {k for k in found if not any(k.startswith(f + ".") for f in free)}
    # ray.engines entries take the ingress's keys (both are DeploymentConfig), which the
    # example says instead of repeating them
    assert RayConfig.model_fields["engines"].annotation == dict[str, type(RayConfig().ingress)]
    return found | {
        k.replace("ray.ingress.", "ray.engines.*.") for k in found if k.startswith("ray.ingress.")
    }


def test_every_config_key_is_in_the_example() -> None:
    accepted = schema_keys(ServeConfig) | {"ray"} | {f"ray.{k}" for k in schema_keys(RayConfig)}
    documented = _documented()
    assert sorted(accepted - documented) == [], "keys missing from examples/serve.yaml"
    unknown = documented - accepted - OLDER_TOP_LEVEL
    assert sorted(unknown) == [], "keys in examples/serve.yaml the reader does not accept"


def test_the_walk_sees_nested_keys() -> None:
    """The schema walk reaches lists, dicts of models and optional models."""
    keys = schema_keys(ServeConfig)
    assert {"models[].replicas[].mock_tokens", "health.busy_grace_s", "fits"} <= keys
    assert "engines.*.num_gpus" in schema_keys(RayConfig)
    assert "models[].replicas[].env" in _documented()
    assert "models[].replicas[].env.CUDA_DEVICE_ORDER" not in _documented()


def test_the_example_loads_with_the_real_readers() -> None:
    cfg = load_config(EXAMPLE)  # what `wattserve serve --config examples/serve.yaml` reads
    assert [m.name for m in cfg.models] == ["llama-3.2-1b", "qwen2.5-0.5b"]
    assert cfg.cache.store == "sqlite" and cfg.fits == "runs/fits.json"
    assert cfg.request_log == "runs/requests.jsonl" and cfg.default_max_tokens == 256
    # the ray: section (the file's last lines), uncommented, is what `wattserve serve
    # --backend ray` reads
    text = EXAMPLE.read_text(encoding="utf-8")
    at = text.index("\n# ray:") + 1
    ray_doc = yaml.safe_load(text[:at] + uncomment(text[at:], once=True))
    cfg2, rc = split_config(ray_doc, source=str(EXAMPLE))
    assert cfg2 == cfg
    assert rc.address == "auto" and rc.ingress.num_replicas == 2
    assert set(rc.engines) == {"llama-3.2-1b", "qwen2.5-0.5b/1"}


def test_the_example_states_true_defaults() -> None:
    """Each "default X" a comment gives for a live top-level or section key is what the
    reader makes of a config that leaves the key out."""
    defaults = ServeConfig.model_validate(
        {"models": [{"name": "m", "replicas": [{"kind": "mock"}]}]}
    )
    wrong = []
    stack: list[tuple[int, str]] = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\s*)(?:- )?([a-z_]+):\s*([^#\[{]*?)\s*#\s*default ([^;:(]+?)\s*[;(]", line)
        head = re.match(r"^(\s*)(?:- )?([a-z_]+):", line)
        if not head:
            continue
        indent = len(head.group(1)) + (2 if line.lstrip().startswith("- ") else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([p for _, p in stack] + [head.group(2)])
        stack.append((indent, head.group(2)))
        if m is None or path.startswith("models"):
            continue
        value: Any = defaults
        for part in path.split("."):
            value = getattr(value, part)
        stated = m.group(4).strip()
        if (None if stated == "none" else yaml.safe_load(stated)) != value:
            wrong.append(f"{path}: says {stated}, is {value!r}")
    assert wrong == []
