"""`effnet report RUN` (and the report `effnet train` writes when a run ends): report.html parses,
is self-contained, and its numbers equal an independent evaluation of the same weights: the
confusion matrix and per-class precision/recall/F1 (scikit-learn), the ECE (a loop over the 15
bins), top-1 (metrics.csv's best epoch and `effnet eval`), the images per class and the file
skipped as unreadable (counted from the folder), and the most confidently wrong images."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import shutil
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from effnet.cli import main

CLASSES = ("blue", "green", "red", "yellow")  # 4 colours, noisy, each class's colour dominant
PER_CLASS = 24
VAL_SPLIT = "0.25"


def _colour_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    base = {"blue": (40, 60, 200), "green": (40, 180, 60), "red": (200, 40, 40), "yellow": (200, 190, 40)}
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(PER_CLASS):
            noise = rng.normal(0, 70, (12, 12, 3))  # loud enough that the classes overlap a little
            px = np.clip(np.array(base[c]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / c / f"{i:02d}.png")
    (root / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png" * 4)
    return root


def train_colours(root: Path) -> tuple[Path, Path]:
    """(run, data): a run trained a few steps on the colour folder by `effnet train`, which writes
    the report (tests/test_deploy.py trains its own the same way)."""
    data = _colour_tree(root / "colours")
    run = root / "run"
    torch.set_num_threads(1)
    rc = main(["train", "--phi", "-6", "--img-size", "32", "--eval-size", "32", "--data", str(data),
               "--val-split", VAL_SPLIT, "-b", "8", "--epochs", "2", "--lr", "0.02",
               "--warmup-epochs", "0", "--output", str(run), "--no-progress", "--no-tensorboard"])
    assert rc == 0
    return run, data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_colours(tmp_path_factory.mktemp("report"))


VOID = {"img", "meta", "br", "hr", "link", "input"}  # tags without an end tag


class Page(HTMLParser):
    """The parts of report.html the tests read: tables by id (rows of cell texts), the text of
    elements by id, every <img> src, the mistake cards, and any tag that would fetch something."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.text: dict[str, str] = {}
        self.images: list[str] = []
        self.cards: list[dict] = []
        self.fetching: list[str] = []
        self.ids: set[str] = set()
        self.anchors: list[str] = []  # href="#..." targets
        self._table = self._row = self._cell = None
        self._open: list[tuple[str, str | None, list[str]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids |= {a["id"]} if "id" in a else set()
        if str(a.get("href", "")).startswith("#"):
            self.anchors.append(a["href"][1:])
        if tag in ("script", "link", "iframe") or (tag != "img" and any(
                str(v).startswith(("http:", "https:")) for k, v in attrs if k in ("href", "src"))):
            self.fetching.append(tag)
        if tag == "img":
            self.images.append(a["src"])
            if self.cards and self._in_card():
                self.cards[-1]["images"] += 1
        if tag == "table":
            self._table = a.get("id")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self.tables[self._table].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag == "div" and a.get("class") == "mistake":
            self.cards.append({"index": int(a["data-index"]), "images": 0})
        if tag not in VOID:
            self._open.append((tag, a.get("id") or a.get("class"), []))

    def _in_card(self) -> bool:
        return any(t == "div" and k == "mistake" for t, k, _ in self._open)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None
        if self._open and self._open[-1][0] == tag:
            _, key, parts = self._open.pop()
            text = "".join(parts).strip()
            if key:
                self.text.setdefault(key, text)
                if key in ("true", "pred", "prob") and self.cards:
                    self.cards[-1][key] = text
            if self._open:
                self._open[-1][2].append(text)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._open:
            self._open[-1][2].append(data)


def _page(run: Path) -> Page:
    return Page((run / "report.html").read_text())


def _body(page: Page, table: str) -> list[list[str]]:
    rows = page.tables[table]
    return rows[1:]  # the header row first; a tfoot row last where the table has one


@pytest.fixture(scope="module")
def independent(trained):
    """Predictions of the run's best weights on its val split, made here the way `effnet eval`
    makes them (load_data + eval_transform, another batch size), not through the report."""
    from effnet.data import Transformed, eval_transform, load_data
    from effnet.data.config import resolve_data_config
    from effnet.inference import load_for_inference
    from effnet.rundir import RunDir

    run, data = trained
    model, classes = load_for_inference(None, RunDir(run).best_weights())
    with warnings.catch_warnings():  # the skipped file: its own test reads the page for it
        warnings.simplefilter("ignore")
        splits = load_data(data, val_split=float(VAL_SPLIT), seed=0)
    pre = resolve_data_config(model)
    val = Transformed(splits.val, eval_transform(pre, pre.eval_size))
    x = torch.stack([val[i][0] for i in range(len(val))])
    labels = np.array([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 5]) for i in range(0, len(x), 5)]).double()
    probs = logits.softmax(1).numpy()
    return {"labels": labels, "preds": probs.argmax(1), "probs": probs, "classes": classes,
            "splits": splits, "model": model}


def test_train_writes_the_report(trained):
    run, _ = trained
    page = _page(run)
    assert page.tables["per-class"] and page.tables["confusion"] and page.tables["epochs"]
    assert len(_body(page, "epochs")) == 2  # both epochs of metrics.csv


def test_page_is_self_contained(trained):
    run, _ = trained
    page = _page(run)
    assert not page.fetching, page.fetching
    assert page.anchors and set(page.anchors) <= page.ids  # every link of the contents goes somewhere
    # the run's three curves, the reliability diagram, and an image + Grad-CAM per mistake
    assert len(page.images) == 3 + 1 + 2 * len(page.cards) and page.cards
    for src in page.images:
        if src.startswith("data:"):
            head, payload = src.split(",", 1)
            assert head == "data:image/png;base64"
            Image.open(io.BytesIO(base64.b64decode(payload, validate=True))).verify()
        else:
            assert (run / src).is_file(), src


def test_per_class_table_and_confusion_matrix_equal_sklearns(trained, independent):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    run, _ = trained
    page = _page(run)
    y, p = independent["labels"], independent["preds"]
    k = len(CLASSES)
    cm = confusion_matrix(y, p, labels=range(k))
    shown = np.array([[int(c or 0) for c in row[1:]] for row in _body(page, "confusion")])
    assert (shown == cm).all(), (shown, cm)

    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=range(k), zero_division=np.nan)
    body = _body(page, "per-class")
    rows, foot = body[:-1], body[-1]
    assert [r[:2] for r in rows] == [[str(i), c] for i, c in enumerate(CLASSES)]
    for i, r in enumerate(rows):
        _, _, _, n_val, n_pred, n_correct, *prf = r
        assert (int(n_val), int(n_pred), int(n_correct)) == (support[i], cm[:, i].sum(), cm[i, i])
        for cell, want in zip(prf, (prec[i], rec[i], f1[i]), strict=True):
            assert cell == "-" if math.isnan(want) else float(cell) == pytest.approx(want, abs=5e-5)
    macro = precision_recall_fscore_support(y, p, average="macro", zero_division=0)[:3]
    assert [float(c) for c in foot[-3:]] == pytest.approx(macro, abs=5e-5)


def test_ece_equals_a_loop_over_15_bins(trained, independent):
    run, _ = trained
    conf = independent["probs"].max(1)
    hit = independent["preds"] == independent["labels"]
    ece = 0.0
    for m in range(15):
        inside = (conf > m / 15) & (conf <= (m + 1) / 15)
        if inside.any():
            ece += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    page = _page(run)
    assert float(page.text["ece-value"]) == pytest.approx(ece, abs=2e-6)
    counts = [int(r[1]) for r in _body(page, "calibration-bins")]
    assert counts == [int(((conf > m / 15) & (conf <= (m + 1) / 15)).sum()) for m in range(15)]


def test_top1_equals_metrics_csv_best_epoch_and_effnet_eval(trained, independent, capsys):
    from effnet.rundir import RunDir

    run, data = trained
    page = _page(run)
    rd = RunDir(run)
    best = json.loads((run / "summary.json").read_text())["best"]
    row = next(r for r in rd.metrics() if int(r["epoch"]) == best["epoch"])
    column = "ema_top1" if best["weights"] == "best_ema.safetensors" else "top1"
    shown = float(page.text["top1"].rstrip(" %"))
    correct, images = (int(n.replace(",", "")) for n in
                       page.text["cards"].split("top-1 (")[1].split(")")[0].split(" / "))
    assert 100 * correct / images == pytest.approx(float(row[column]), abs=1e-4)  # 6 digits in the csv
    assert shown == pytest.approx(float(row[column]), abs=0.005)
    assert correct == int((independent["preds"] == independent["labels"]).sum())
    assert float(page.text["logged-top1"]) == pytest.approx(float(row[column]), abs=1e-4)

    assert main(["eval", "--weights", str(run), "--data", str(data), "--val-split", VAL_SPLIT]) == 0
    lines = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[2:]}
    which = "EMA" if best["weights"] == "best_ema.safetensors" else "weights"
    assert float(lines[which][2]) == pytest.approx(shown, abs=0.005)
    assert int(lines[which][-1]) == images


def test_data_summary_counts_images_and_names_the_skipped_file(trained, independent):
    run, data = trained
    page = _page(run)
    assert page.text["skipped-count"] == "1"
    assert [r[0] for r in _body(page, "skipped")] == [str(data / "green" / "broken.png")]
    body = _body(page, "data-counts")
    rows, foot = body[:-1], body[-1]
    readable = {c: sum(1 for f in (data / c).iterdir() if f.name != "broken.png") for c in CLASSES}
    val = np.bincount(independent["labels"], minlength=len(CLASSES))
    # val holds ceil(0.25 * N) images, stratified; every readable image is in train or val
    assert sum(val) == math.ceil(0.25 * sum(readable.values()))
    assert [(r[0], int(r[1]) + int(r[2])) for r in rows] == list(readable.items())
    assert [int(r[2]) for r in rows] == val.tolist()
    assert foot == ["all", str(sum(readable.values()) - sum(val)), str(sum(val))]


def test_mistakes_are_the_most_confident_wrong_ones(trained, independent):
    run, _ = trained
    page = _page(run)
    y, p, probs = independent["labels"], independent["preds"], independent["probs"]
    wrong = np.flatnonzero(p != y)
    assert len(wrong) >= 2, "the run is too good to test this: make the colours noisier"
    expect = wrong[np.argsort(-probs[wrong, p[wrong]], kind="stable")][:24]
    assert [c["index"] for c in page.cards] == expect.tolist()
    for c in page.cards:
        assert c["images"] == 2
        assert (c["true"], c["pred"]) == (CLASSES[y[c["index"]]], CLASSES[p[c["index"]]])
        assert float(c["prob"]) == pytest.approx(probs[c["index"], p[c["index"]]], abs=5e-5)


def test_grad_cam_of_a_32px_model_is_not_one_flat_value(independent):
    """At 32 px the head's map is 1x1, so a Grad-CAM there would be the same colour everywhere:
    the report's overlays come from the last stage of at least 4x4 cells."""
    from effnet.tools.cam import grad_cam, target_layer

    model = independent["model"]
    assert target_layer(model, 32) is not model.head
    heat = grad_cam(model, independent["splits"].val[0][0]).heat
    assert heat.max() - heat.min() > 0.5


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("effnet: error: "), err
    return err[0]


def test_bad_input_is_one_line(trained, tmp_path, capsys):
    run, _ = trained
    assert main(["report", str(tmp_path)]) == 2
    assert "is not an effnet run directory (no config.yaml)" in _one_error_line(capsys)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not an effnet run directory" in _one_error_line(capsys)

    unfinished = tmp_path / "unfinished"  # a run stopped before its first epoch ended
    unfinished.mkdir()
    for name in ("config.yaml", "spec.json"):
        shutil.copy(run / name, unfinished / name)
    assert main(["report", str(unfinished)]) == 2
    assert "has no weights yet" in _one_error_line(capsys)
    assert not (unfinished / "report.html").exists()


def test_a_run_whose_data_is_gone_still_gets_the_rest(trained, tmp_path, capsys):
    run, _ = trained
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    (moved / "report.html").unlink()
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["runtime"]["data"] = str(tmp_path / "gone")
    (moved / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["report", str(moved)]) == 2
    line = _one_error_line(capsys)
    assert f"data directory not found: {tmp_path / 'gone'}" in line and "report.html" in line
    page = _page(moved)
    assert "data directory not found" in page.text["missing"]
    assert len(_body(page, "epochs")) == 2 and page.tables["recipe"] and len(page.images) == 3
    assert "per-class" not in page.tables and set(page.anchors) <= page.ids


def test_a_report_that_fails_leaves_the_trained_run(tmp_path, capsys, monkeypatch):
    import effnet.tools.report

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(effnet.tools.report, "write_report", broken)
    run = tmp_path / "run"
    assert main(["train", "--phi", "-6", "--train-subset", "32", "--val-subset", "16", "-b", "16",
                 "--steps", "2", "--output", str(run), "--no-progress", "--no-tensorboard"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "report" in ln]
    assert err == [f"effnet: warning: the run report was not written (No space left on device); "
                   f"the run is saved in {run}; try again with: effnet report {run}"]
    assert (run / "best.safetensors").is_file() and (run / "summary.json").is_file()
    assert not (run / "report.html").exists()


def test_scores_by_hand():
    from effnet.tools.scores import calibration, class_scores, confident_mistakes, confusion_matrix

    labels, preds = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 1])
    cm = confusion_matrix(labels, preds, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    s = class_scores(cm)
    assert s.precision[:2].tolist() == [1.0, 0.5] and math.isnan(s.precision[2])
    assert s.recall.tolist() == [0.5, 1.0, 0.0] and s.f1.tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])
    # 15 bins: 0.9 falls in (13/15, 14/15], 1.0 in (14/15, 1], 0.5 in (7/15, 8/15]
    cal = calibration(np.array([0.9, 1.0, 0.5]), np.array([True, False, True]))
    assert cal.count.tolist() == [0] * 7 + [1] + [0] * 5 + [1, 1]
    assert cal.ece == pytest.approx((abs(1 - 0.9) + abs(0 - 1.0) + abs(1 - 0.5)) / 3)
    assert confident_mistakes(labels, preds, np.array([0.9, 0.8, 0.7, 0.95, 0.8]), 5).tolist() == [1, 4]


def test_eval_of_a_runs_weights_holds_out_the_images_the_run_held_out(tmp_path, capsys):
    """A run trained with --seed 3 drew its --val-split with seed 3: `eval --val-split` of its
    weights scores those same images (the loss it prints is metrics.csv's val loss), not seed 0's,
    which would include images the run trained on; --split-seed 0 says otherwise."""
    data = _colour_tree(tmp_path / "colours")
    run = tmp_path / "run"
    torch.set_num_threads(1)
    assert main(["train", "--phi", "-6", "--img-size", "32", "--eval-size", "32", "--data", str(data),
                 "--val-split", VAL_SPLIT, "-b", "8", "--epochs", "1", "--seed", "3",
                 "--output", str(run), "--no-progress", "--no-tensorboard"]) == 0
    val_loss = float(list(csv.DictReader((run / "metrics.csv").open()))[-1]["val_loss"])

    def eval_loss(*extra: str) -> float:
        capsys.readouterr()
        assert main(["eval", "--weights", str(run / "best.safetensors"), "--data", str(data),
                     "--val-split", VAL_SPLIT, *extra]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines()
                   if "best.safetensors" in line)
        return float(row.split()[-2])

    assert eval_loss() == pytest.approx(val_loss, abs=1e-4)
    assert eval_loss("--split-seed", "0") != pytest.approx(val_loss, abs=1e-4)
