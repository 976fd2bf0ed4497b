"""Progressive learning schedule values (V2 paper Table 6 and the released code, SPEC D.2)."""

from dataclasses import replace

import pytest

from effnet.train.progressive import (
    PRESETS,
    explicit_plan,
    plan_from_dict,
    plan_to_dict,
    schedule,
    stage_at,
)


def test_v2s_paper_convention():
    plan = PRESETS["v2-s"]
    unrounded = schedule(replace(plan, size_divisor=None))
    assert [s.size for s in unrounded] == [128, 185, 243, 300]
    stages = schedule(plan)
    assert [s.size for s in stages] == [128, 184, 240, 300]
    assert [s.randaug for s in stages] == pytest.approx([5, 8.333, 11.667, 15], abs=1e-3)
    assert [s.dropout for s in stages] == pytest.approx([0.1, 0.1667, 0.2333, 0.3], abs=1e-3)
    assert [s.mixup for s in stages] == [0, 0, 0, 0]


def test_v2s_code_convention_matches_released_code():
    stages = schedule(PRESETS["v2-s-code"])
    assert [s.size for s in stages] == [171, 214, 257, 300]
    assert [s.randaug for s in stages] == pytest.approx([5, 6.667, 8.333, 10], abs=1e-3)
    assert {s.dropout for s in stages} == {0.2}  # the code does not schedule dropout


@pytest.mark.parametrize("name, sizes, mix", [
    ("v2-m-code", [192, 256, 320, 384], [0, 0.0667, 0.1333, 0.2]),
    ("v2-l-code", [192, 256, 320, 384], [0, 0.1667, 0.3333, 0.5]),
    ("v2-b3-code", [156, 184, 212, 240], [0, 0, 0, 0]),
])
def test_code_table(name, sizes, mix):
    stages = schedule(PRESETS[name])
    assert [s.size for s in stages] == sizes
    assert [s.mixup for s in stages] == pytest.approx(mix, abs=1e-3)
    assert [s.cutmix for s in stages] == pytest.approx(mix, abs=1e-3)


def test_last_stage_is_exactly_the_target_and_stages_tile_training():
    plan = explicit_plan(3, "100:203", randaug="2:9", dropout="0:0.5")
    stages = schedule(plan)
    assert stages[-1].size == 203 and stages[-1].randaug == 9 and stages[-1].dropout == 0.5
    assert [s.size % 8 for s in stages[:-1]] == [4, 0]  # 100 is S_0 itself, 152 rounds to 152
    assert stages[0].start == 0 and stages[-1].end == 1
    assert stage_at(stages, 0.5).index == 1 and stage_at(stages, 1.0).index == 2


def test_plan_round_trips_and_rejects_nonsense():
    plan = PRESETS["v2-l"]
    assert plan_from_dict(plan_to_dict(plan)) == plan
    with pytest.raises(ValueError):
        explicit_plan(4, "128-300")
    with pytest.raises(ValueError):
        explicit_plan(0, "128:300")
