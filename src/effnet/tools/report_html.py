"""The run report as one HTML page: no script, no server, every picture a data: URI, so the file
opens from disk (or from a mail) as it is. Everything the run or its data names (class names,
paths, config values) is escaped."""

from __future__ import annotations

import datetime as dt
from html import escape

import numpy as np

from .html import CSS, img, key_values, num, table
from .report_data import DataSummary, Evaluation, ReportData
from .scores import ECE_BINS, top_confusions

TABLE_CLASSES = 30  # up to this many classes the confusion matrix is a table, beyond a picture
LISTED_SKIPS = 100  # skipped files listed by name (all are counted)

def _header(p: ReportData) -> str:
    e = p.evaluation
    best = p.best
    where = f"best epoch {best['epoch']}" if best["epoch"] is not None else "no finished epoch"
    sub = (f"{escape(p.model)} &middot; {p.params:,} parameters &middot; {len(p.classes)} classes "
           f"&middot; {where}, weights {escape(best['weights'])}")
    made = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    dev = f" on {escape(e.device)}" if e else ""
    return (f"<header><div><h1>effnet run report: {escape(str(p.run))}</h1><p>{sub}</p>"
            f"<p>written {made}{dev}</p></div></header>")


def _nav(p: ReportData) -> str:
    evaluated = [("classes", "Per class"), ("calibration", "Calibration"),
                 ("mistakes", "Mistakes")] if p.evaluation is not None else []
    parts = [("summary", "Summary"), ("training", "Training"), ("data", "Data"), *evaluated,
             ("config", "Config")]
    return "<nav>" + "".join(f'<a href="#{i}">{t}</a>' for i, t in parts) + "</nav>"


def _logged(p: ReportData) -> float | None:
    """metrics.csv's top-1 of the evaluated weights at their epoch (None when it has none)."""
    b = p.best
    row = next((r for r in p.metrics if b["epoch"] is not None and r.get("epoch") == str(b["epoch"])), None)
    value = (row or {}).get(b["column"]) or ""
    return float(value) if value else None


def _summary(p: ReportData) -> str:
    out = ['<h2 id="summary">Summary</h2>']
    if p.missing:
        out.append(f'<div class="warn" id="missing">The data summary and the evaluation are missing: '
                   f"{escape(p.missing)}. The run's own files are shown below.</div>")
    e = p.evaluation
    if e is None:
        return "\n".join(out)
    correct = int((e.labels == e.preds).sum())
    macro = e.per_class.macro()
    cards = [("top1", f"{e.top1:.2f} %", f"top-1 ({correct:,} / {e.images:,})"),
             ("top5", f"{e.top5:.2f} %", "top-5"), ("loss", f"{e.loss:.4f}", "val loss"),
             ("ece", f"{e.calib.ece:.4f}", f"ECE ({ECE_BINS} bins)"),
             ("macro-f1", num(macro[2]), "macro F1"), ("images", f"{e.images:,}", "val images")]
    out.append('<div class="cards">' + "".join(
        f'<div class="card"><b id="{i}">{escape(v)}</b><span>{escape(s)}</span></div>'
        for i, v, s in cards) + "</div>")
    logged = _logged(p)
    if logged is not None:
        same = abs(logged - e.top1) < 0.005  # metrics.csv holds 6 significant digits
        line = (f"metrics.csv, epoch {p.best['epoch']}, column {p.best['column']}: "
                f'<span id="logged-top1">{logged:.4f}</span> %')
        out.append(f'<p class="{"note" if same else "warn"}">{line}; this page: {e.top1:.4f} %'
                   + ("" if same else " &mdash; they differ: the data, the device or the --amp "
                      "setting differs from the run's") + "</p>")
    out.append(f'<p class="note">{escape(e.weights.name)} evaluated on the val split, {e.images:,} '
               f"images at {p.preprocess.eval_size} px ({escape(p.preprocess.interpolation)}, crop "
               f"{p.preprocess.crop_pct:.3f} {escape(p.preprocess.crop_mode)}), on {escape(e.device)}"
               f" with --amp {escape(e.amp)}, by the function the trainer logs metrics.csv with.</p>")
    return "\n".join(out)


def _training(p: ReportData) -> str:
    out = ['<h2 id="training">Training</h2>']
    if p.plots:
        out.append('<div class="grid">' + "".join(
            f"<figure>{img(png, f'{kind} curve')}</figure>" for kind, png in p.plots.items()) + "</div>")
    else:
        out.append('<p class="note">No curves: a run draws them when it finishes.</p>')
    # the values as metrics.csv holds them (6 significant digits), so the two read the same
    cols = [("epoch", "epoch"), ("train loss", "train_loss"), ("val loss", "val_loss"),
            ("top-1 %", "top1"), ("top-5 %", "top5"), ("EMA val loss", "ema_val_loss"),
            ("EMA top-1 %", "ema_top1"), ("EMA top-5 %", "ema_top5"), ("lr", "lr"),
            ("img/s", "img_per_s")]
    cols = [c for c in cols if any(r.get(c[1]) for r in p.metrics)]
    if p.metrics:
        rows = [[r.get(k) or "" for _, k in cols] for r in p.metrics]
        out.append('<h3>Epochs (metrics.csv)</h3><div class="scroll">'
                   + table([c[0] for c in cols], rows, left=0, attrs='id="epochs"') + "</div>")
    return "\n".join(out)


def _data(p: ReportData) -> str:
    out = ['<h2 id="data">Data</h2>']
    d: DataSummary | None = p.data
    rt = p.config.get("runtime", {})
    rule = (f"val split {rt.get('val_split')} held out, stratified, seed {p.config['recipe'].get('seed')}"
            if rt.get("val_split") else "the data's own val split")
    subsets = "; ".join(f"{k.replace('_', '-')} {rt[k]}" for k in ("train_subset", "val_subset") if rt.get(k))
    if d is None:
        out.append(f'<p class="note">--data {escape(str(rt.get("data") or "digits"))}: not loaded.</p>')
        return "\n".join(out)
    out.append(f"<p>--data <code>{escape(d.name)}</code>: {len(p.classes)} classes, "
               f"{d.train_images:,} train and {sum(d.val_counts):,} val images ({escape(rule)}"
               f"{'; ' + escape(subsets) if subsets else ''}).</p>")
    train = d.train_counts or ["?"] * len(p.classes)
    rows = [(c, t, v) for c, t, v in zip(p.classes, train, d.val_counts, strict=True)]
    counts = table(("class", "train images", "val images"), rows, attrs='id="data-counts"',
                   foot=("all", d.train_images, sum(d.val_counts)))
    out.append(counts if len(rows) <= 40 else
               f"<details><summary>images per class ({len(rows)} classes)</summary>{counts}</details>")
    if d.train_counts is None:
        out.append('<p class="note">This dataset does not list its labels; counting the train '
                   "images per class would read every one.</p>")
    n = len(d.skipped)
    out.append(f'<h3>Skipped as unreadable: <span id="skipped-count">{n}</span> file(s)</h3>')
    if n:
        shown = d.skipped[:LISTED_SKIPS]
        out.append(table(("file", "why"), shown, left=2, attrs='id="skipped"'))
        if n > len(shown):
            out.append(f'<p class="note">and {n - len(shown)} more.</p>')
    else:
        out.append('<p class="note">Every image file found was readable (or the data is not a folder).</p>')
    return "\n".join(out)


def _per_class(p: ReportData, e: Evaluation) -> str:
    s = e.per_class
    train = (p.data.train_counts if p.data and p.data.train_counts else None) or ["?"] * len(p.classes)
    rows = [(i, c, t, int(s.support[i]), int(s.predicted[i]), int(s.correct[i]), num(s.precision[i]),
             num(s.recall[i]), num(s.f1[i]))
            for i, (c, t) in enumerate(zip(p.classes, train, strict=True))]
    macro = s.macro()
    foot = ("", "macro average", "", int(s.support.sum()), int(s.predicted.sum()), int(s.correct.sum()),
            *(num(m) for m in macro))
    out = ['<h2 id="classes">Per class</h2>',
           '<p class="note">Precision = correct / predicted as the class, recall = correct / val '
           "images of the class, F1 their harmonic mean; a class nothing was predicted as has no "
           'precision ("-"), counted as 0 in the macro average, which runs over the classes that '
           "occur as a label or a prediction (scikit-learn's zero_division=0).</p>",
           '<div class="scroll">' + table(("#", "class", "train images", "val images", "predicted as",
                                            "correct", "precision", "recall", "F1"), rows, left=2,
                                           attrs='id="per-class"', foot=foot) + "</div>",
           "<h3>Confusion matrix</h3>"]
    k = len(p.classes)
    if k <= TABLE_CLASSES:
        out.append('<p class="note">Rows: true class; columns: predicted class; shade: the share '
                   "of the row.</p>" + _confusion_table(e.cm, p.classes))
    else:
        from .report_figures import confusion_png

        out.append(f"<figure>{img(confusion_png(e.cm), 'confusion matrix')}</figure>")
    worst = top_confusions(e.cm)
    if worst:
        out.append("<h3>Most frequent confusions</h3>" + table(
            ("true", "predicted as", "images"), [(p.classes[t], p.classes[q], n) for t, q, n in worst],
            left=2, attrs='id="confusions"'))
    return "\n".join(out)


def _confusion_table(cm: np.ndarray, classes: list[str]) -> str:
    rows = cm.sum(axis=1)
    head = "".join(f'<th title="{escape(c)}">{escape(c[:8])}</th>' for c in classes)
    body = []
    for i, c in enumerate(classes):
        cells = []
        for j in range(len(classes)):
            n = int(cm[i, j])
            share = n / rows[i] if rows[i] else 0.0
            rgb = "46,139,87" if i == j else "214,39,40"
            style = f' style="background:rgba({rgb},{0.08 + 0.8 * share:.2f})"' if n else ""
            cells.append(f"<td{style}>{n if n else ''}</td>")
        body.append(f'<tr><th class=l title="{escape(c)}">{escape(c[:16])}</th>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="cm" id="confusion"><thead><tr><th class=l>true \\ '
            f'predicted</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _calibration(e: Evaluation) -> str:
    from .report_figures import reliability_png

    c = e.calib
    rows = [(f"({lo:.3f}, {hi:.3f}]", int(n), num(a), num(m), num(abs(a - m)))
            for lo, hi, n, a, m in zip(c.edges[:-1], c.edges[1:], c.count, c.accuracy, c.confidence,
                                       strict=True)]
    return "\n".join([
        '<h2 id="calibration">Calibration</h2>',
        f'<p>Expected calibration error <b id="ece-value">{c.ece:.6f}</b>: the val images binned by '
        f"confidence (the softmax probability of the predicted class) into {len(rows)} equal-width "
        "bins (m/15, (m+1)/15], then the mean over images of |accuracy - mean confidence| of their "
        "bin (Guo et al. 2017, eq. 3).</p>",
        '<div class="grid">'
        f"<figure>{img(reliability_png(c), 'reliability diagram')}</figure>"
        + table(("confidence bin", "images", "accuracy", "mean confidence", "gap"), rows, left=1,
                 attrs='id="calibration-bins"') + "</div>"])


def _mistakes(p: ReportData, e: Evaluation) -> str:
    wrong = int((e.labels != e.preds).sum())
    out = ['<h2 id="mistakes">Most confidently wrong</h2>',
           f'<p class="note">The {len(e.mistakes)} wrongly classified val images (of {wrong:,}) with '
           "the highest probability on the wrong class. Left: the image; right: Grad-CAM of the "
           "predicted class (red: what drove the prediction) on the model's last feature map, or "
           "for a small input the last one of at least 4x4 cells.</p>"]
    if e.cam_note:
        out.append(f'<p class="warn">{escape(e.cam_note)}</p>')
    cards = []
    for m in e.mistakes:
        pics = img(m.image_png, f"val image {m.index}")
        if m.cam_png is not None:
            pics += " " + img(m.cam_png, f"Grad-CAM of {p.classes[m.pred]}")
        name = f'<div class="names" title="{escape(m.source)}">{escape(m.source.rsplit("/", 1)[-1])}</div>' \
            if m.source else ""
        cards.append(
            f'<div class="mistake" data-index="{m.index}">{pics}<div>true <b class="true">'
            f"{escape(p.classes[m.label])}</b> &middot; predicted <b class=\"pred\">"
            f"{escape(p.classes[m.pred])}</b> p=<span class=\"prob\">{m.prob:.4f}</span> &middot; "
            f"p(true) {m.prob_true:.4f} &middot; val #{m.index}</div>{name}</div>")
    out.append('<div class="mistakes">' + "".join(cards) + "</div>" if cards
               else '<p class="note">No val image is wrongly classified.</p>')
    return "\n".join(out)


def _config(p: ReportData) -> str:
    c = p.config
    derived = {k: v for k, v in c.items() if k not in ("recipe", "runtime", "command")}
    pre = p.preprocess
    model = {"model": p.model, "parameters": f"{p.params:,}", "classes": len(p.classes),
             "eval size": pre.eval_size, "train size": pre.train_size, "crop": f"{pre.crop_pct:.3f} "
             f"{pre.crop_mode}", "interpolation": pre.interpolation, "mean": pre.mean, "std": pre.std}
    command = " ".join(map(str, c.get("command") or []))
    return "\n".join([
        '<h2 id="config">Config</h2>',
        f"<p>Command: <code>{escape(command)}</code></p>" if command else "",
        '<div class="grid">',
        f"<div><h3>Model and preprocessing</h3>{key_values(model)}<h3>Derived</h3>{key_values(derived)}</div>",
        f"<div><h3>Recipe ({escape(str(c['recipe'].get('name', '')))})</h3>"
        + key_values(c["recipe"], 'id="recipe"') + "</div>",
        f"<div><h3>Runtime options</h3>{key_values(c['runtime'])}</div>",
        "</div>"])


def _footer(p: ReportData) -> str:
    t = ", ".join(f"{k.replace('_', '-')} {v:.1f} s" for k, v in p.seconds.items())
    return (f'<p class="note" style="margin-top:30px">Written by <code>effnet report '
            f"{escape(str(p.run))}</code>{' (' + t + ')' if t else ''}.</p>")


def render(p: ReportData) -> str:
    e = p.evaluation
    body = [_summary(p), _training(p), _data(p)]
    if e is not None:
        body += [_per_class(p, e), _calibration(e), _mistakes(p, e)]
    body += [_config(p), _footer(p)]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>effnet report: {escape(str(p.run))}</title><style>{CSS}</style></head><body>"
            + _header(p) + _nav(p) + "<main>" + "\n".join(body) + "</main></body></html>\n")
