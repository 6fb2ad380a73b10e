"""The terminal progress: one bar per stage with its own epoch count and labelled losses."""

from cffaudit.train.progress import layer_losses, stage_bar


def test_layer_losses_are_labelled_per_layer():
    records = [{"layer": 0, "loss": 4.013, "car": 0.6981}, {"layer": 1, "loss": 4.19, "car": 0.5}]
    assert layer_losses(records) == "L0 4.01 L1 4.19 | CAR0 0.698"
    assert layer_losses([{"layer": 0, "loss": 1.0, "car": None}]) == "L0 1.00"


def test_each_stage_counts_its_own_epochs(capsys):
    with stage_bar(True, "stage 1", 3, 1, [1, 2]) as bar:  # resumed after one of three epochs
        bar.epoch("L0 4.01")
        bar.epoch("L0 3.90")
    with stage_bar(True, "probe", 50, 0, [1, 2]) as bar:
        bar.epoch("probe loss 1.000 val 50.00%")
    err = capsys.readouterr().err
    assert "stage 1 (seeds 1,2)" in err and "3/3" in err and "L0 3.90" in err
    assert "probe (seeds 1,2)" in err and "1/50" in err


def test_no_bar_without_progress(capsys):
    with stage_bar(False, "stage 1", 3, 0, [0]) as bar:
        bar.epoch("L0 4.01")
    assert capsys.readouterr().err == ""
