"""AllocatorConfig.parse: PYTORCH_CUDA_ALLOC_CONF strings as torch reads them, bad ones named by key."""
from __future__ import annotations

import pytest

from gpuplan.planner import PlannerError
from gpuplan.planner.memory.alloc_config import SIZE_MAX, AllocatorConfig

MiB = 2**20


def test_defaults():
    cfg = AllocatorConfig.parse("")
    assert cfg == AllocatorConfig() == AllocatorConfig.parse(None)
    assert cfg.max_split_size == SIZE_MAX and cfg.max_non_split_rounding == 20 * MiB
    assert not cfg.expandable_segments and cfg.garbage_collection_threshold == 0.0


def test_keys_spaces_and_a_trailing_comma():
    cfg = AllocatorConfig.parse(" expandable_segments:True, max_split_size_mb:128,"
                                "garbage_collection_threshold:0.6,max_non_split_rounding_mb:64,"
                                "release_lock_on_cudamalloc:True,backend:native,")
    assert cfg.expandable_segments and cfg.max_split_size == 128 * MiB
    assert cfg.garbage_collection_threshold == 0.6 and cfg.max_non_split_rounding == 64 * MiB
    assert AllocatorConfig.parse(cfg.to_conf()) == cfg


def test_roundup_power2_divisions_list_as_torch_tests_it():
    # c10/test/core/AllocatorConfig_test.cpp (newest stored version): the same expectations
    cfg = AllocatorConfig.parse("roundup_power2_divisions:[64:8,128:2,256:4,512:2,1024:4,>:1]")
    got = {mb: cfg.divisions_for(mb * MiB) for mb in (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)}
    assert got == {32: 8, 64: 8, 128: 2, 256: 4, 512: 2, 1024: 4, 2048: 1, 4096: 1, 8192: 1}
    cfg = AllocatorConfig.parse("roundup_power2_divisions:[128:8,256:16,512:1,2048:8,>:2]")
    got = {mb: cfg.divisions_for(mb * MiB) for mb in (64, 128, 256, 512, 1024, 2048, 4096)}
    assert got == {64: 8, 128: 8, 256: 16, 512: 1, 1024: 0, 2048: 8, 4096: 2}
    assert AllocatorConfig.parse(cfg.to_conf()) == cfg
    assert AllocatorConfig.parse("roundup_power2_divisions:4").divisions_for(2048 * MiB) == 4
    assert AllocatorConfig.parse("roundup_power2_divisions:4").divisions_for(100) == 4   # below 1 MiB: interval 0


@pytest.mark.parametrize("conf, key, words", [
    ("max_split_size_mb:10", "max_split_size_mb", ">= 20"),
    ("max_split_size_mb:lots", "max_split_size_mb", "integer"),
    ("max_split_size_mb", "max_split_size_mb", "':'"),
    ("max_split_size_mb:", "max_split_size_mb", "missing"),
    ("max_non_split_rounding_mb:4", "max_non_split_rounding_mb", ">= 20"),
    ("expandable_segments:true", "expandable_segments", "True or False"),
    ("garbage_collection_threshold:1.5", "garbage_collection_threshold", "(0.0, 1.0)"),
    ("garbage_collection_threshold:x", "garbage_collection_threshold", "number"),
    ("roundup_power2_divisions:3", "roundup_power2_divisions", "power of 2"),
    ("roundup_power2_divisions:[64:8", "roundup_power2_divisions", "not closed"),
    ("roundup_power2_divisions:[100:8]", "roundup_power2_divisions", "powers of 2"),
    ("backend:cudaMallocAsync", "backend", "does not simulate"),
    ("foo:123", "foo", "unknown key"),
    ("large_segment_size_mb:15", "large_segment_size_mb", "newer PyTorch"),
    ("expandable_segments:True;max_split_size_mb:128", "expandable_segments", "True or False"),
    ("expandable_segments:True max_split_size_mb:128", "expandable_segments", "True or False"),
])
def test_bad_strings_name_the_key(conf, key, words):
    with pytest.raises(PlannerError) as err:
        AllocatorConfig.parse(conf)
    message = str(err.value)
    assert f": {key}:" in message and words in message
    assert "\n" not in message
