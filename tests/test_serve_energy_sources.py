"""Where a replica's joules come from: this host's meter for a metered device, the energy
fit of its model on its device for an unmetered one (``energy_source: fitted``), never both."""

from __future__ import annotations

import json
import time

import pytest

from wattserve.errors import ConfigError
from wattserve.fit import predict, save_fits
from wattserve.serve.config import config_from_dict
from wattserve.serve.energy import EnergyAccountant, FittedEnergy
from wattserve.serve.service import Service, process_meter_misses
from wattserve.types import EnergyReading, ModelFit

WATTS = 20.0


def _fit(model: str, device: str, c0: float, c_out: float) -> ModelFit:
    return ModelFit(
        model=model,
        device=device,
        quantity="energy_j",
        form="physical",
        params=("c0", "c1", "c2", "c3"),
        coefficients=(c0, 0.01, c_out, 0.0),
    )


LARGE_REMOTE = _fit("large", "remote-gpu", 2.0, 0.5)
SMALL_CPU = _fit("small", "cpu", 100.0, 100.0)  # never used: small is metered


class ConstantPower:
    """A host drawing ``watts`` on its one device ``cpu``, on the accountant's clock."""

    def __init__(self, watts: float, clock=time.perf_counter) -> None:
        self.watts, self.clock = watts, clock
        self.t0 = clock()

    def read(self) -> EnergyReading:
        t = self.clock()
        return EnergyReading(t, {"cpu": self.watts * (t - self.t0)}, {"cpu": "replay"})


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_an_unmetered_device_takes_none_of_the_hosts_joules():
    """One request on each device over the same second at 10 W: the metered one is charged
    the host's 10 J, the unmetered one its fit; the sum is 10 J + fitted (not 20 J)."""
    clock = Clock()
    meter = ConstantPower(10.0, clock)
    acc = EnergyAccountant(
        meter,
        clock=clock,
        min_read_s=0.0,
        unmetered=["remote-gpu"],
        fitted=FittedEnergy([LARGE_REMOTE]),
    )
    acc.tick()
    a = acc.begin("cpu")
    b = acc.begin("remote-gpu")
    clock.t = 1.0
    assert acc.end("remote-gpu", b) is None  # the meter says nothing about it
    fitted = acc.charge_fitted("large", "remote-gpu", 10, 20)
    assert fitted == pytest.approx(2.0 + 0.1 + 10.0)
    metered = acc.end("cpu", a)
    assert metered == pytest.approx(10.0)
    assert set(acc.summary()) == {"cpu"}
    assert acc.summary()["cpu"]["metered_j"] == pytest.approx(10.0)
    assert acc.fitted_summary()["remote-gpu"]["fitted_j"] == pytest.approx(fitted)
    assert not acc.is_metered("remote-gpu") and acc.is_metered("cpu")


def test_fitted_energy_picks_the_fit_of_model_and_device():
    other = _fit("large", "cpu", 50.0, 0.0)
    fe = FittedEnergy([other, LARGE_REMOTE])
    assert fe.fit_for("large", "remote-gpu") is LARGE_REMOTE
    assert fe.fit_for("large", "cpu") is other
    assert fe.fit_for("large", "elsewhere") is None  # two fits, neither on that device
    assert FittedEnergy([LARGE_REMOTE])("large", "elsewhere", 0, 4) == pytest.approx(4.0)
    assert fe("nobody", "remote-gpu", 1, 1) is None


def _config(fits_file: str, **over: object):
    data = {
        "models": [
            {
                "name": "small",
                "replicas": [{"kind": "mock", "mock_tokens": 6, "mock_delay_s": 0.01}],
            },
            {
                "name": "large",
                "replicas": [
                    {
                        "kind": "mock",
                        "mock_tokens": 9,
                        "mock_delay_s": 0.01,
                        "device": "remote-gpu",
                        "meter": "unmetered",
                    }
                ],
            },
        ],
        "fits": fits_file,
        "cache": {"enabled": False},
        "energy": {"interval_s": 0.05},
        "auth": {"keys_env": None},
    }
    data.update(over)
    return config_from_dict(data)


async def test_two_replicas_one_unmetered_charge_metered_plus_fitted(tmp_path):
    """Acceptance: the charged joules add up to this host's metered joules for the metered
    replica plus the fitted joules of the unmetered one; usage and metrics say which."""
    fits_file = save_fits([LARGE_REMOTE, SMALL_CPU], tmp_path / "fits.json")
    svc = Service(_config(str(fits_file)), meter=ConstantPower(WATTS))
    await svc.start()
    charged = {"small": 0.0, "large": 0.0}
    fitted_expected = 0.0
    try:
        t0 = time.perf_counter()
        for i in range(6):
            for model in ("small", "large"):
                body = {"model": model, "prompt": f"question {i} " * 5, "max_tokens": 16}
                reply = await svc.gateway.handle("completions", json.dumps(body).encode())
                assert reply.status == 200, reply.body
                usage = json.loads(reply.body)["usage"]
                assert usage["energy_source"] == ("fitted" if model == "large" else "replay")
                charged[model] += usage["energy_j"]
                if model == "large":
                    n_in, n_out = usage["prompt_tokens"], usage["completion_tokens"]
                    assert n_out == 9
                    fitted_expected += predict(LARGE_REMOTE, n_in, n_out, warn=False)
        elapsed = time.perf_counter() - t0
        acc = svc.accountant
        host = acc.summary()
        assert set(host) == {"cpu"}  # the unmetered device never reads this host's meter
        assert charged["small"] == pytest.approx(host["cpu"]["charged_j"], rel=1e-9)
        assert 0 < charged["small"] <= WATTS * elapsed
        assert charged["small"] < predict(SMALL_CPU, 10, 6, warn=False)  # metered, not fitted
        assert charged["large"] == pytest.approx(fitted_expected, rel=1e-9)
        assert acc.fitted_summary()["remote-gpu"]["fitted_j"] == pytest.approx(fitted_expected)
        total = svc.metrics.charged_j()
        assert total == pytest.approx(host["cpu"]["charged_j"] + fitted_expected, rel=1e-9)
        text = svc.metrics.render().decode()
        assert 'wattserve_energy_joules_total{model="large",source="fitted"}' in text
        assert 'wattserve_energy_joules_total{model="small",source="replay"}' in text
        assert svc.stats()["energy"]["fitted"]["remote-gpu"]["requests"] == 6
    finally:
        await svc.stop()


def test_replica_meter_defaults_and_a_device_both_ways_is_refused(tmp_path):
    from wattserve.serve.config import ReplicaConfig
    from wattserve.serve.service import unmetered_devices

    assert ReplicaConfig(kind="mock").metered
    assert not ReplicaConfig(kind="mock", device="https://gpu-box:8000").metered
    assert not ReplicaConfig(kind="mock", device="unmetered").metered
    assert ReplicaConfig(kind="mock", device="http://x", meter="local").metered
    cfg = _config(str(tmp_path / "none.json"))
    assert unmetered_devices(cfg) == {"remote-gpu"}
    both = config_from_dict(
        {
            "models": [
                {"name": "a", "replicas": [{"kind": "mock", "device": "d"}]},
                {"name": "b", "replicas": [{"kind": "mock", "device": "d", "meter": "unmetered"}]},
            ]
        }
    )
    with pytest.raises(ConfigError, match="both metered and unmetered"):
        unmetered_devices(both)


def test_a_process_meter_names_the_replicas_it_cannot_see():
    def cfg(meter: str) -> object:
        return config_from_dict(
            {
                "models": [
                    {"name": "a", "replicas": [{"kind": "url", "url": "http://127.0.0.1:9/v1"}]},
                    {"name": "b", "replicas": [{"kind": "local", "backend": "simulated"}]},
                    {
                        "name": "c",
                        "replicas": [
                            {"kind": "url", "url": "http://10.0.0.7:8000/v1", "meter": "unmetered"}
                        ],
                    },
                ],
                "energy": {"meter": meter},
            }
        )

    assert process_meter_misses(cfg("modeled:process")) == ["a/url"]  # b in-process, c fitted
    assert process_meter_misses(cfg("modeled")) == []
