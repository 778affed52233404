"""URL query parameters <-> widget values (app/dashboard/state.py): what a link can and cannot say."""
import pytest

pytest.importorskip("streamlit")
from gpuplan.app.dashboard.state import Param  # noqa: E402


@pytest.mark.parametrize("param, raw, value", [
    (Param("batch_size", 8, int, low=1, high=4096), "16", 16),
    (Param("alpha", 8.0, float, low=0.01, high=1e6), "16.5", 16.5),
    (Param("grad_ckpt", True, bool), "0", False),
    (Param("grad_ckpt", True, bool), "true", True),
    (Param("method", "full", str, ["full", "lora"]), "lora", "lora"),
    (Param("gpus", [], list, ["t4", "l4", "h100"]), "t4,h100", ["t4", "h100"]),
    (Param("gpus", ["t4"], list, ["t4", "l4"]), "", []),
])
def test_parse_and_render_round_trip(param, raw, value):
    assert param.parse(raw) == value
    assert param.parse(param.render(value)) == value


@pytest.mark.parametrize("param, raw, message", [
    (Param("batch_size", 8, int, low=1, high=4096), "0", "between 1 and 4096"),
    (Param("batch_size", 8, int, low=1, high=4096), "lots", "invalid literal"),
    (Param("grad_ckpt", True, bool), "maybe", "use 1 or 0"),
    (Param("method", "full", str, ["full", "lora"]), "dora", "choose from full, lora"),
    (Param("gpus", [], list, ["t4", "l4"]), "t4,rtx-9090", "unknown rtx-9090"),
])
def test_bad_link_values_say_what_is_accepted(param, raw, message):
    with pytest.raises(ValueError, match=message):
        param.parse(raw)
