"""Checks on data/gpus.json: schema (data/README.md, section `gpus.json`), unique
names and aliases, and the memory totals that real devices are known to report."""

import json
import re
from pathlib import Path

import pytest

CATALOG_PATH = Path(__file__).resolve().parents[2] / "data" / "gpus.json"
MiB = 2**20
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FLOP_KEYS = ("bf16", "fp16", "fp32", "tf32", "fp8")

# nvidia-smi --query-gpu=memory.total (MiB) as reported by real devices.
GOLDEN_MEMORY_MIB = {
    "h100-sxm-80gb": 81559,
    "a100-sxm-80gb": 81920,
    "a100-sxm-40gb": 40960,
    "rtx-4090": 24564,
    "rtx-3090": 24576,
    "t4": 15360,
    "l4": 23034,
    "a10g": 23028,
}

# Datacenter cards that clouds rent out: each needs prices from at least three providers.
# a10g is left out: the A10G is an AWS-only part, and the Modal and Hugging Face rows that made it three
# were unverified recollections, deleted rather than let an unsourced price pick the cheapest plan.
RENTED_DATACENTER = ("h100-sxm-80gb", "a100-sxm-80gb", "l4")

# What users type, and the GPU it must resolve to.
EXPECTED_ALIASES = {
    "h100": "h100-sxm-80gb",
    "a100": "a100-sxm-80gb",
    "a100-40gb": "a100-sxm-40gb",
    "a100-80gb": "a100-sxm-80gb",
    "4090": "rtx-4090",
    "rtx4090": "rtx-4090",
    "3090": "rtx-3090",
    "a6000": "rtx-a6000",
    "v100": "v100-sxm2-16gb",
    "h200": "h200-sxm-141gb",
    "mi300x": "mi300x",
}


def _load():
    with CATALOG_PATH.open() as f:
        return json.load(f)


CATALOG = _load()
GPUS = CATALOG["gpus"]
BY_NAME = {g["name"]: g for g in GPUS}


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def test_top_level():
    assert set(CATALOG) >= {"as_of", "gpus"}
    assert CATALOG["as_of"] == "2026-11-22"
    assert isinstance(GPUS, list)
    assert len(GPUS) >= 20


@pytest.mark.parametrize("gpu", GPUS, ids=lambda g: g.get("name", "?"))
def test_gpu_schema(gpu):
    for key, typ in (
        ("name", str), ("aliases", list), ("vendor", str), ("architecture", str),
        ("memory_source", str), ("peak_flops", dict), ("interconnect", dict),
        ("prices", list), ("source", str), ("as_of", str),
    ):
        assert key in gpu, f"missing {key}"
        assert isinstance(gpu[key], typ), f"{key} is not {typ.__name__}"

    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", gpu["name"]), "name must be lower case, dashed"
    assert all(isinstance(a, str) and a.strip() for a in gpu["aliases"])
    assert gpu["vendor"] in {"nvidia", "amd"}
    assert gpu["architecture"] and gpu["architecture"] == gpu["architecture"].lower()
    assert gpu["memory_source"].strip() and gpu["source"].strip()
    assert ISO_DATE.match(gpu["as_of"])

    mem = gpu["memory_bytes"]
    assert _is_int(mem) and mem > 0 and mem % MiB == 0

    flops = gpu["peak_flops"]
    assert set(flops) == set(FLOP_KEYS)
    for k in FLOP_KEYS:
        assert flops[k] is None or (_is_number(flops[k]) and flops[k] > 0), k
    assert flops["fp32"] is not None
    assert flops["bf16"] is not None or flops["fp16"] is not None
    for half in ("bf16", "fp16"):
        if flops[half] is not None:
            assert flops[half] > flops["fp32"], f"{half} must exceed fp32"
    if flops["fp8"] is not None and flops["bf16"] is not None:
        assert flops["fp8"] >= flops["bf16"]
    # Dense figures: nothing listed here is above 5 PFLOP/s per GPU.
    assert all(v is None or v < 5e15 for v in flops.values())

    bw = gpu["memory_bandwidth_bytes_per_s"]
    assert _is_int(bw) and 1e11 <= bw <= 2e13

    ic = gpu["interconnect"]
    assert isinstance(ic.get("kind"), str) and ic["kind"]
    assert _is_int(ic.get("bytes_per_s")) and ic["bytes_per_s"] > 0

    assert _is_int(gpu["power_watts"]) and 30 <= gpu["power_watts"] <= 1500

    assert "purchase_usd" in gpu
    assert gpu["purchase_usd"] is None or (_is_number(gpu["purchase_usd"]) and gpu["purchase_usd"] > 0)


@pytest.mark.parametrize("gpu", GPUS, ids=lambda g: g.get("name", "?"))
def test_prices(gpu):
    assert gpu["prices"], "every GPU needs at least one price"
    providers = []
    for p in gpu["prices"]:
        for key in ("provider", "usd_per_hour", "spot_usd_per_hour", "source", "as_of"):
            assert key in p, f"price missing {key}"
        assert isinstance(p["provider"], str) and p["provider"] == p["provider"].lower()
        assert _is_number(p["usd_per_hour"]) and 0 < p["usd_per_hour"] < 100, "per GPU-hour"
        spot = p["spot_usd_per_hour"]
        assert spot is None or (_is_number(spot) and 0 < spot <= p["usd_per_hour"])
        assert isinstance(p["source"], str) and p["source"].startswith("http")
        assert isinstance(p["as_of"], str) and ISO_DATE.match(p["as_of"])
        providers.append(p["provider"])
    assert len(providers) == len(set(providers)), "one entry per provider"


@pytest.mark.parametrize("name", RENTED_DATACENTER)
def test_rented_cards_have_three_providers(name):
    providers = {p["provider"] for p in BY_NAME[name]["prices"]}
    assert len(providers) >= 3, providers


def test_names_and_aliases_unique():
    seen = {}
    for gpu in GPUS:
        keys = [gpu["name"]] + gpu["aliases"]
        assert len({k.lower() for k in keys}) == len(keys), f"duplicate within {gpu['name']}"
        for k in keys:
            low = k.lower()
            assert low not in seen, f"{k!r} used by {seen[low]} and {gpu['name']}"
            seen[low] = gpu["name"]


@pytest.mark.parametrize("alias,name", sorted(EXPECTED_ALIASES.items()))
def test_expected_aliases_resolve(alias, name):
    matches = [g["name"] for g in GPUS if alias.lower() in {k.lower() for k in [g["name"]] + g["aliases"]}]
    assert matches == [name]


@pytest.mark.parametrize("name,mib", sorted(GOLDEN_MEMORY_MIB.items()))
def test_golden_memory(name, mib):
    assert BY_NAME[name]["memory_bytes"] == mib * MiB


def test_required_cards_present():
    wanted = {
        "h200-sxm-141gb", "h100-sxm-80gb", "h100-pcie-80gb", "h100-nvl-94gb", "b200",
        "a100-sxm-40gb", "a100-sxm-80gb", "a100-pcie-40gb", "a100-pcie-80gb",
        "l40s", "l40", "l4", "a10g", "a10", "rtx-a6000", "rtx-6000-ada",
        "rtx-5090", "rtx-4090", "rtx-3090", "t4", "v100-sxm2-16gb", "v100-sxm2-32gb", "mi300x",
    }
    assert wanted <= set(BY_NAME)


# --- user catalog files (planner/catalog.py add_gpu_catalog / $GPUPLAN_GPU_CATALOG) -----------------
from gpuplan.planner.io import catalog as cat  # noqa: E402
from gpuplan.planner.specs.errors import PlannerError  # noqa: E402


@pytest.fixture
def fresh_catalog(monkeypatch):
    monkeypatch.setattr(cat, "_user_gpu_files", [])
    monkeypatch.delenv(cat.GPU_CATALOG_ENV, raising=False)
    cat._gpu_catalog.cache_clear(); cat._gpu_index.cache_clear()
    yield
    cat._gpu_catalog.cache_clear(); cat._gpu_index.cache_clear()


def test_every_price_says_whether_it_was_verified():
    for gpu in GPUS:
        for p in gpu["prices"]:
            assert isinstance(p.get("verified"), bool)
            if not p["verified"]:
                assert "unverified" in p["source"]


def test_user_file_overrides_price_and_adds_a_gpu(tmp_path, fresh_catalog):
    f = tmp_path / "mine.yaml"
    f.write_text("gpus:\n"
                 "  - name: h100\n    prices:\n      - {provider: mycluster, usd_per_hour: 1.1, spot_usd_per_hour: 0.5}\n"
                 "  - name: rtx-pro-6000\n    memory_bytes: 102625181696\n    peak_flops: {bf16: 5.0e14, fp32: 1.2e14}\n"
                 "    memory_bandwidth_bytes_per_s: 1792000000000\n    interconnect: {kind: pcie5, bytes_per_s: 64000000000}\n"
                 "    power_watts: 600\n    purchase_usd: 8500\n")
    cat.add_gpu_catalog(str(f))
    h = cat.resolve_gpu("h100")
    mine = next(p for p in h.prices if p.provider == "mycluster")
    assert mine.usd_per_hour == 1.1 and mine.spot_usd_per_hour == 0.5 and "mine.yaml" in mine.source
    assert len(h.prices) == len(BY_NAME["h100-sxm-80gb"]["prices"]) + 1
    new = cat.resolve_gpu("rtx-pro-6000")
    assert new.memory_bytes == 102625181696 and new.peak_flops("bf16") == 5e14


def test_env_var_file(tmp_path, fresh_catalog, monkeypatch):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"gpus": [{"name": "rtx-4090", "purchase_usd": 1800}]}))
    monkeypatch.setenv(cat.GPU_CATALOG_ENV, str(f))
    cat._gpu_catalog.cache_clear(); cat._gpu_index.cache_clear()
    assert cat.resolve_gpu("4090").purchase_usd == 1800


def test_bad_user_files(tmp_path, fresh_catalog):
    with pytest.raises(PlannerError, match="does not exist"):
        cat.add_gpu_catalog(str(tmp_path / "none.yaml"))
    f = tmp_path / "new.yaml"
    f.write_text("gpus:\n  - name: my-card\n    memory_bytes: 1073741824\n")
    with pytest.raises(PlannerError, match="lacks peak_flops"):
        cat.add_gpu_catalog(str(f))
    assert cat.user_gpu_files() == []
    g = tmp_path / "broken.json"
    g.write_text("{not json")
    with pytest.raises(PlannerError, match="could not be parsed"):
        cat.add_gpu_catalog(str(g))
