"""The device loop's hint for a GPU given few worlds (no compilation)."""

from simfish_rl.device_loop import GPU_WORLDS_HINT, few_worlds_hint


def test_hint_only_for_few_worlds_on_a_gpu():
    hint = few_worlds_hint(64, "gpu")
    assert hint is not None and "64 worlds" in hint and "--num-envs" in hint
    assert few_worlds_hint(GPU_WORLDS_HINT, "gpu") is None
    assert few_worlds_hint(64, "cpu") is None
