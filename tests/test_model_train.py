"""`strata train --quick`: both strategies run, the better is saved with its figures."""

import json

import pytest

from strata.cli import main


def test_quick_training_trains_both_strategies_and_keeps_one(tmp_path):
    torch = pytest.importorskip("torch", reason="training needs torch: pip install -e .[train]")
    from training.data import DATASET_DIR

    if not (DATASET_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed: apt-get install -y dataset-fashion-mnist")
    assert main(["train", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "train_report.json").read_text())
    assert set(report["strategies"]) == {"joint", "two-stage"}
    assert report["chosen"] in report["strategies"]
    assert report["finetune"]["val_main_accuracy"] == report["strategies"][report["chosen"]]["val_main_accuracy"]
    for figures in report["strategies"].values():
        assert 0.1 < figures["val_branch_accuracy"] <= 1 and 0.1 < figures["val_main_accuracy"] <= 1
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=False)
    assert checkpoint["report"]["chosen"] == report["chosen"]
    # fine-tuning only the branch can be redone from the saved pre-fine-tune checkpoint
    assert main(["train", "--quick", "--resume", str(tmp_path / "compared.pt"), "--out", str(tmp_path)]) == 0
    assert main(["train", "--quick", "--resume", str(tmp_path / "model.pt"), "--out", str(tmp_path)]) == 2


def test_training_without_the_dataset_explains_how_to_install_it(tmp_path, capsys):
    pytest.importorskip("torch", reason="training needs torch: pip install -e .[train]")
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "apt-get install -y dataset-fashion-mnist" in capsys.readouterr().err
