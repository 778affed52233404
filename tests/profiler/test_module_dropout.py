"""LoHa/LoKr's host-side module-dropout draw under FakeTensorMode (profiler/module_dropout.py): answered only
for peft's two layers, and the simulated step then equals the real CPU step to the byte."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from gpuplan.planner.io.catalog import resolve_model  # noqa: E402
from gpuplan.planner.specs.enums import Method  # noqa: E402
from gpuplan.planner.specs.setup import PeftSpec, TrainingSetup  # noqa: E402
from gpuplan.profiler import module_dropout  # noqa: E402
from gpuplan.profiler.device import Device  # noqa: E402
from gpuplan.profiler.run import measure  # noqa: E402

SMALL = str(Path(__file__).parent / "fixtures" / "small-qwen2-config.json")


def test_only_peft_lycoris_layers_get_the_supremum():
    with module_dropout.module_dropout_draws():
        assert isinstance(torch.rand(1), torch.Tensor)           # any other caller: the real torch.rand
        namespace = {"__name__": "peft.tuners.loha.layer", "torch": torch}
        exec("def draw(p):\n    return torch.rand(1) > p", namespace)   # noqa: S102  (a caller in peft's module)
        assert namespace["draw"](0.999) is True and namespace["draw"](1.0) is False
    assert torch.rand is not None and isinstance(torch.rand(1), torch.Tensor)


@pytest.mark.parametrize("peft_type", ["LOHA", "LOKR"])
def test_simulated_lycoris_step_equals_the_real_cpu_step(peft_type):
    model = resolve_model(SMALL)
    setup = TrainingSetup(method=Method.LORA, batch_size=2, seq_len=64,
                          adapter=PeftSpec.of(peft_type, {"r": 8, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}))
    simulated = measure(model, setup, Device.SIMULATE)
    real = measure(model, setup, Device.CPU)
    assert simulated.peak_allocated_bytes == real.peak_allocated_bytes > 0
