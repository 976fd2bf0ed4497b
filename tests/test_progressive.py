"""Progressive learning schedule values (V2 paper Table 6 and the released code, SPEC D.2)."""

from dataclasses import replace

import pytest

from effnet.train.progressive import (
    PRESETS,
    explicit_plan,
    plan_from_dict,
    plan_to_dict,
    schedule,
    stage_epochs,
    stage_of_progress,
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
    # an epoch belongs to the stage it ends in: one ending exactly at 1/3 is still stage 1's
    assert [stage_of_progress(stages, f).index for f in (0.1, 1 / 3, 0.5, 2 / 3, 0.9, 1.0)] == [
        0, 0, 1, 1, 2, 2]
    assert stage_epochs(stages, 10) == [range(0, 3), range(3, 6), range(6, 10)]


def test_plan_round_trips_and_rejects_nonsense():
    plan = PRESETS["v2-l"]
    assert plan_from_dict(plan_to_dict(plan)) == plan
    with pytest.raises(ValueError):
        explicit_plan(4, "128-300")
    with pytest.raises(ValueError):
        explicit_plan(0, "128:300")


class _Trainer:
    """What the trainer's stage hook reads and calls, recording the size it sets each epoch."""

    def __init__(self, epochs: int):
        from types import SimpleNamespace

        from effnet.train.plan import Progress

        self.epoch, self.epoch_progress = 0, Progress.of(epochs)
        self.world = SimpleNamespace(main=False)
        self.size = None

    def set_data_stage(self, size, randaug, mixup, cutmix):
        self.size = size

    def set_regularization(self, dropout=None, drop_path=None):
        pass


@pytest.mark.parametrize("epochs, stages", [(10, 4), (350, 4), (7, 3), (5, 5), (2, 4), (3, 2),
                                            (1, 1), (9, 1)])
def test_schedule_table_lists_the_epochs_the_trainer_runs_each_stage_in(epochs, stages, capsys):
    from effnet.cli import main
    from effnet.train.stages import progressive_hook

    argv = ["schedule", "--stages", str(stages), "--size", "64:128", "--epochs", str(epochs)]
    assert main(argv) == 0
    printed = {}  # epoch (1-based) -> stage, read off the printed table
    for line in capsys.readouterr().out.splitlines()[3:]:
        stage, span, size = line.split()[:3]
        if span != "-":
            first, _, last = span.partition("-")
            for e in range(int(first), int(last or first) + 1):
                printed[e] = (int(stage), int(size))
    assert sorted(printed) == list(range(1, epochs + 1))
    plan = explicit_plan(stages, "64:128")
    sizes = [s.size for s in schedule(plan)]
    assert len(set(sizes)) == stages  # so the size the trainer sets tells its stage
    hook, trainer, ran = progressive_hook(plan), _Trainer(epochs), {}
    for e in range(epochs):
        trainer.epoch = e
        hook(trainer)
        ran[e + 1] = (sizes.index(trainer.size) + 1, trainer.size)
    assert ran == printed


def test_sizes_given_as_fractions_take_the_models_eval_size():
    from effnet.train.progressive import plan_from_text, schedule, table

    plan = plan_from_text("stages=3,size=0.5:0.875,randaug=0:0,dropout=0:0.2")
    assert plan.relative and plan.size == (0.5, 0.875)
    assert [s.size for s in schedule(plan.at_eval_size(224))] == [112, 152, 192]  # 196 -> 8s
    assert [s.size for s in schedule(plan.at_eval_size(260))] == [128, 176, 224]
    with pytest.raises(ValueError, match="needs the size"):
        schedule(plan)
    with pytest.raises(ValueError, match="fractions of the eval size"):
        table(plan)
    assert "112" in table(plan, eval_size=224)
    with pytest.raises(ValueError, match="whole pixels or fractions"):
        plan_from_text("stages=2,size=0.5:300")
