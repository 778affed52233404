"""`gpuplan estimate --gpu` adds time: step, tokens/s, hours and dollars, each with its range."""
import json

from click.testing import CliRunner

from gpuplan.app.cli import cli as main


def _run(*args):
    return CliRunner().invoke(main, ["estimate", "-m", "llama-3.2-1b", "--method", "lora", "-b", "2", "-s", "1024", *args])


def test_json_adds_a_time_object_per_gpu_and_keeps_the_fit_keys():
    r = _run("--gpu", "a100-80gb", "--gpu", "rtx-4090", "--dataset-tokens", "50M", "--epochs", "2", "--json")
    assert r.exit_code == 0, r.output
    fits = json.loads(r.output)["fits"]
    assert [f["gpu"] for f in fits] == ["a100-sxm-80gb", "rtx-4090"]
    for f in fits:
        assert {"memory_bytes", "fits", "headroom_bytes"} <= set(f)
        t = f["time"]
        lo, hi = t["tokens_per_s_range"]
        assert lo <= t["tokens_per_s"] <= hi
        assert t["hours"] == 2 * 50e6 / t["tokens_per_s"] / 3600
        assert t["hours_range"][0] <= t["hours"] <= t["hours_range"][1]
        for c in t["costs"]:
            assert c["usd_range"][0] <= c["usd"] <= c["usd_range"][1]


def test_text_output_prints_the_time_table_and_bad_tokens_fail_in_one_line():
    r = _run("--gpu", "h100")
    assert r.exit_code == 0 and "Time (ranges" in r.output
    bad = _run("--gpu", "h100", "--dataset-tokens", "lots")
    assert bad.exit_code == 2 and "token count" in bad.output and "Traceback" not in bad.output
