"""The public surface of every package, pinned: ``__all__`` of each package equals the list
below, every listed name resolves, and importing a package stays cheap (lazy names pull in
their heavy libraries only when read). Renaming or removing an export fails here; adding one
means adding it to this list on purpose."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import types

import pytest

PUBLIC = {
    "wattserve": [
        "CacheEntry",
        "Chunk",
        "Completion",
        "ConfigError",
        "EnergyReading",
        "EngineUnavailable",
        "Measurement",
        "Message",
        "ModelFit",
        "Request",
        "RouteDecision",
        "RunRecord",
        "RunSummary",
        "Schedule",
        "Usage",
        "WattserveError",
    ],
    "wattserve.bench": [
        "BenchConfig",
        "Concurrent",
        "ConstantRate",
        "GammaRate",
        "LoadPoint",
        "PointResult",
        "Poisson",
        "Recommendation",
        "Workload",
        "arun_benchmark",
        "build_workload",
        "catalog_list",
        "find_run",
        "load_points",
        "load_run_json",
        "make_pattern",
        "make_points",
        "pareto_mask",
        "random_workload",
        "read_requests",
        "recommend",
        "resume_benchmark",
        "run_benchmark",
        "run_schedule",
        "summarize",
    ],
    "wattserve.cache": [
        "AsyncRedisStore",
        "AsyncSQLiteStore",
        "AsyncStore",
        "GDSF",
        "LEC",
        "LFU",
        "LRU",
        "POLICY_NAMES",
        "Policy",
        "RedisStore",
        "ResponseCache",
        "SQLiteStore",
        "canonical_request",
        "is_cacheable",
        "make_key",
        "make_policy",
        "namespace",
        "open_async_store",
        "open_store",
    ],
    "wattserve.commands": [],
    "wattserve.energy": [
        "Attribution",
        "CompositeMeter",
        "EnergySampler",
        "METER_CHOICES",
        "MeterError",
        "ModeledCpuMeter",
        "NullMeter",
        "NvmlMeter",
        "PowerModel",
        "RaplMeter",
        "ReplayMeter",
        "ReplicaAttribution",
        "WindowError",
        "attribute_replicas",
        "attribute_requests",
        "auto_meter",
        "measure",
        "meter_info",
    ],
    "wattserve.engines": [
        "BACKENDS",
        "DEFAULT_MODEL",
        "Launcher",
        "LlamaCppEngine",
        "LocalEngine",
        "MockConfig",
        "MockServer",
        "OpenAIHTTPEngine",
        "SimulatedEngine",
        "api_base",
        "complete",
        "create_engine",
        "known_models",
        "resolve_model",
    ],
    "wattserve.evaluate": [
        "EvalConfig",
        "EvalResult",
        "resume_eval",
        "run_eval",
        "summarize",
    ],
    "wattserve.fit": [
        "Columns",
        "ExtrapolationWarning",
        "FORMS",
        "Form",
        "GroupData",
        "ModelFit",
        "find_fit",
        "fit_form",
        "fit_groups",
        "get_form",
        "load_fits",
        "load_groups",
        "predict",
        "read_table",
        "save_fits",
        "select_best",
    ],
    "wattserve.openai": [
        "APIError",
        "AnswerError",
        "Client",
        "DONE",
        "MockResponse",
        "MockTransport",
        "Origin",
        "SSEError",
        "SSEReader",
        "StatusError",
        "StreamBooks",
        "Timeouts",
        "api_base",
        "chunk_event",
        "decode_answer",
        "full_body",
        "openapi_schemas",
        "parse_body",
        "to_request",
        "usage_dict",
        "usage_event",
    ],
    "wattserve.plan": [
        "InfeasibleError",
        "Problem",
        "QuerySet",
        "SOLVERS",
        "Target",
        "baselines",
        "build_problem",
        "compare",
        "explain",
        "quality_matrix",
        "read_queries",
        "read_targets",
        "solve",
        "synth_queries",
    ],
    "wattserve.report": ["ReportData", "load", "load_run", "load_sweep", "render", "write_report"],
    "wattserve.route": [
        "EmbeddingScorer",
        "LabelledPrompts",
        "PriorScorer",
        "Router",
        "TfidfScorer",
        "evaluate_router",
        "group_split",
        "load_labelled_csvs",
        "make_scorer",
        "parse_route_model",
        "random_split",
        "threshold_for_quality",
        "threshold_for_share",
    ],
    "wattserve.serve": [
        "APIError",
        "BackgroundServer",
        "Gateway",
        "ModelConfig",
        "ReplicaConfig",
        "ServeConfig",
        "Service",
        "config_from_dict",
        "create_app",
        "load_config",
        "make_server",
        "run_loop",
        "serve",
    ],
    "wattserve.sim": [
        "Scenario",
        "Selector",
        "ZhuConfig",
        "load_trace",
        "parse_selector",
        "power_trace",
        "run_zhu",
        "simulate_lanes",
        "simulate_sequential",
        "summarise",
        "zhu_scenario",
    ],
    "wattserve.sweep": ["SweepConfig", "SweepResult", "finish_sweep", "run_sweep"],
    "wattserve.tasks": [
        "CHECKERS",
        "FAMILIES",
        "Family",
        "TaskItem",
        "check",
        "extract",
        "first_line",
        "make_tasks",
        "normalise",
        "read_tasks",
        "write_tasks",
    ],
}

# packages whose names load on first read (PEP 562): importing them imports none of these
LAZY = [
    "wattserve",
    "wattserve.bench",
    "wattserve.commands",
    "wattserve.energy",
    "wattserve.engines",
    "wattserve.report",
    "wattserve.serve",
    "wattserve.sweep",
]
HEAVY = ["torch", "transformers", "fastapi", "aiohttp", "matplotlib", "pandas", "sklearn", "scipy"]


def test_every_package_is_pinned():
    import wattserve

    found = {"wattserve"} | {
        f"wattserve.{m.name}" for m in pkgutil.iter_modules(wattserve.__path__) if m.ispkg
    }
    unpinned = sorted(found - set(PUBLIC))
    assert not unpinned, f"add PUBLIC entries (sorted __all__) for {unpinned} to this file"
    assert found == set(PUBLIC), f"pinned packages that no longer exist: {set(PUBLIC) - found}"


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_pinned(package):
    mod = importlib.import_module(package)
    assert len(mod.__all__) == len(set(mod.__all__)), "duplicate names in __all__"
    added = sorted(set(mod.__all__) - set(PUBLIC[package]))
    removed = sorted(set(PUBLIC[package]) - set(mod.__all__))
    assert not (added or removed), f"{package}: exported {added}, no longer exported {removed}"
    assert sorted(mod.__all__) == PUBLIC[package]


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_exported_name_resolves_to_a_wattserve_object(package):
    mod = importlib.import_module(package)
    for name in mod.__all__:
        obj = getattr(mod, name)
        assert not isinstance(obj, types.ModuleType), f"{package}.{name} is a module"
        if callable(obj):
            assert obj.__module__.startswith("wattserve."), (package, name, obj.__module__)
            assert obj.__name__ == name, (package, name, obj.__name__)
        assert name in dir(mod)
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    assert set(mod.__all__) <= set(namespace)


@pytest.mark.parametrize("package", LAZY)
def test_lazy_packages_reject_unknown_names_and_keep_submodules(package):
    mod = importlib.import_module(package)
    with pytest.raises(AttributeError, match="no_such_name"):
        mod.no_such_name  # noqa: B018 - the attribute read is the test
    assert not hasattr(mod, "no_such_name")


def test_submodules_still_import_beside_lazy_names():
    from wattserve.energy import meters
    from wattserve.serve import config

    assert meters.auto_meter is importlib.import_module("wattserve.energy").auto_meter
    assert config.ServeConfig is importlib.import_module("wattserve.serve").ServeConfig


def test_top_level_types_are_the_shared_vocabulary():
    import wattserve
    from wattserve import Completion, ModelFit, Request
    from wattserve import types as shared

    assert (Request, Completion, ModelFit) == (shared.Request, shared.Completion, shared.ModelFit)
    assert wattserve.__version__
    r = Request(id="r1", prompt="hello", max_tokens=4)
    c = Completion(
        request_id=r.id,
        model="m",
        text="a b c",
        input_tokens=1,
        output_tokens=3,
        sent_s=10.0,
        first_token_s=10.5,
        end_s=11.5,
        chunk_t=(10.5, 11.0, 11.5),
    )
    assert (c.ttft_s, c.e2e_s, c.tpot_s, c.itl_s) == (0.5, 1.5, 0.5, (0.5, 0.5))
    fit = ModelFit(
        model="m", device="d", quantity="energy_j", form="f", params=("a",), coefficients=(1.0,)
    )
    assert ModelFit.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit
    from wattserve.fit import ModelFit as FitModelFit

    assert FitModelFit is ModelFit


def test_importing_every_package_imports_no_heavy_library():
    code = (
        "import importlib, json, sys\n"
        f"for p in {sorted(PUBLIC)!r}: importlib.import_module(p)\n"
        f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == []


def test_lazy_packages_import_without_numpy_or_pydantic():
    code = (
        "import importlib, json, sys\n"
        f"for p in {LAZY!r}: importlib.import_module(p)\n"
        "print(json.dumps([h for h in ('numpy', 'pydantic') if h in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == []
