import json
import os

import pytest
import torch

import semibook as sb
from semibook.engine.checkpoint import load_checkpoint
from semibook.engine.batches import StepData
from semibook.engine.fit import fit, prepare
from semibook.engine.seed import host_info
from tests.conftest import computed


def cfg_for(method, tiny, **kw):
    return sb.make_config(method, "fashion-mnist", 20, 0, "smoke",
                          **{**tiny, "steps": 20, "eval_every": 10, "log_every": 5, **kw})


@pytest.mark.parametrize("method", ["supervised", "mixmatch", "mean_teacher"])
def test_resume_is_bit_exact_on_cpu(method, tiny, tmp_path):
    cfg = cfg_for(method, tiny)
    whole = fit(cfg, tmp_path / "whole", progress=False, device="cpu")
    part = fit(cfg, tmp_path / "parts", progress=False, device="cpu", stop_after=10)
    assert not part["finished"]
    resumed = fit(cfg, tmp_path / "parts", resume=True, progress=False, device="cpu")
    assert resumed["finished"]
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")
    assert a["step"] == b["step"] == 20
    for k, v in a["method"].items():  # student, teacher / EMA, BN statistics
        assert torch.equal(v, b["method"][k]), k
    for sa, sb_ in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb_[k])), k
    # metrics and agreement too
    assert computed(whole["history"]) == computed(resumed["history"])


def test_a_step_is_a_function_of_seed_and_step(tiny):
    cfg = cfg_for("mixmatch", tiny)
    tr, _ = prepare(cfg, torch.device("cpu"))
    b1 = tr.data.batch(7, 1, 2)
    tr2, _ = prepare(cfg, torch.device("cpu"))
    tr2.data.batch(3, 1, 2)  # other steps drawn first change nothing
    b2 = tr2.data.batch(7, 1, 2)
    assert torch.equal(b1.x_l, b2.x_l) and torch.equal(b1.views_u[1], b2.views_u[1])
    assert not torch.equal(b1.views_u[0], b1.views_u[1])  # K views differ


def test_epochs_visit_every_labeled_image_once(tiny):
    cfg = cfg_for("supervised", tiny, batch_l=5)
    tr, split = prepare(cfg, torch.device("cpu"))
    data: StepData = tr.data
    n = len(split.labeled)  # 20 labeled images, 4 steps of 5 per epoch
    seen = torch.cat([data.indices(0, n, 5, s) for s in range(4)])
    assert sorted(seen.tolist()) == list(range(n))


def test_history_results_and_split_are_written(tiny, tmp_path):
    cfg = cfg_for("mean_teacher", tiny)
    res = fit(cfg, tmp_path / "run", progress=False, device="cpu")
    for name in ("config.json", "history.jsonl", "checkpoint.pt", "results.json"):
        assert (tmp_path / "run" / name).exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == cfg.to_dict()
    evals = [r for r in res["history"] if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [10, 20]
    ag = evals[-1]["agreement"]["teacher-vs-student"]
    assert ag["agree_correct"] + ag["agree_wrong"] + ag["disagree"] == pytest.approx(1.0)
    assert res["split_sha256"] and res["device"].startswith("cpu")
    assert res["versions"]["torch"] == torch.__version__
    assert res["host"]["cpu_count"] == os.cpu_count() and res["host"]["cpu"]
    assert res["best"]["acc"] == max(r["acc"] for r in evals)
    assert res["last"]["step"] == 20 and res["finished"]
    assert res["overrides"]["steps"] == 20


def test_run_folder_with_another_config_is_refused(tiny, tmp_path):
    fit(cfg_for("supervised", tiny, steps=2, eval_every=2), tmp_path / "r", progress=False)
    before = (tmp_path / "r" / "config.json").read_text()
    with pytest.raises(sb.ConfigError, match="different config"):
        fit(cfg_for("supervised", tiny, steps=4, eval_every=2), tmp_path / "r", progress=False)
    with pytest.raises(sb.ConfigError, match="--resume"):
        fit(cfg_for("supervised", tiny, steps=2, eval_every=2), tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "config.json").read_text() == before


def test_non_finite_loss_stops_with_the_step_and_terms(tiny, tmp_path, monkeypatch):
    from semibook.methods.supervised import Supervised
    orig = Supervised.training_step

    def broken(self, batch, step):
        loss, logs = orig(self, batch, step)
        return (loss * float("nan") if step == 3 else loss), logs
    monkeypatch.setattr(Supervised, "training_step", broken)
    with pytest.raises(RuntimeError, match="step 3.*loss_sup"):
        fit(cfg_for("supervised", tiny), tmp_path / "nan", progress=False)


ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse4_2 avx avx2 avx512f avx512bw

processor\t: 1
model name\t: AMD EPYC 9R14
"""


def test_host_record_names_the_processor_and_its_widest_vectors():
    """A results file's elapsed time is read beside the host it ran on: the model, its family
    and model numbers, and whether it has AVX-512."""
    info = host_info(ZEN4)
    assert info["cpu"] == "AMD EPYC 9R14 (family 25 model 17)" and info["vector"] == "avx512f"
    older = host_info(ZEN4.replace(" avx512f avx512bw", ""))
    assert older["vector"] == "avx2" and older["cpu_count"] == os.cpu_count()


def test_ctrl_c_during_a_step_ends_the_run_after_that_step_and_its_checkpoint(
        tiny, tmp_path, monkeypatch, terminal_sigint):
    import signal

    import semibook.engine.fit as fit_module
    real = fit_module.train_step

    def step_with_ctrl_c(trainer, opt, step):
        if step == 2:  # Ctrl-C arrives in the middle of the third step
            os.kill(os.getpid(), signal.SIGINT)
        return real(trainer, opt, step)
    monkeypatch.setattr(fit_module, "train_step", step_with_ctrl_c)
    cfg = cfg_for("supervised", tiny, eval_every=1, log_every=1)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "run", progress=False, device="cpu")
    rows = [json.loads(ln) for ln in
            (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [1, 2, 3]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt", "supervised")["step"] == 3


def test_intermediate_evaluations_use_the_fixed_subset_and_the_last_every_image(tiny, tmp_path):
    cfg = cfg_for("mean_teacher", tiny, eval_subset=50)
    res = fit(cfg, tmp_path / "run", progress=False, device="cpu")
    evals = [r for r in res["history"] if r["kind"] == "eval"]
    assert [r["eval_images"] for r in evals] == [50, 200]  # the fake tree: 200 test images
    tr, _ = prepare(cfg, torch.device("cpu"))
    sub, whole = tr.evaluate(7, whole=False), tr.evaluate(7, whole=True)
    # the last row scores the very subset the curve's points use, and every image
    assert whole["subset_acc"] == sub["acc"] and sub["eval_images"] == 50
    from semibook.engine.evaluate import predict
    model = next(iter(tr.method.eval_models().values()))
    pred = predict(model, tr.test_x, tr.prep, 64, tr.device)
    assert whole["acc"] == (pred == tr.test_y).float().mean().item()
    assert (pred[tr.subset] == tr.test_y[tr.subset]).float().mean().item() == sub["acc"]
    # the best point is chosen among scores of the same images (the subset)
    best = max(evals, key=lambda r: r.get("subset_acc", r["acc"]))
    assert res["best"] == {"acc": best.get("subset_acc", best["acc"]), "step": best["step"],
                           "images": 50}


def test_histories_hold_each_class_accuracy_and_each_models_right_share(tiny, tmp_path):
    cfg = cfg_for("mean_teacher", tiny)
    res = fit(cfg, tmp_path / "run", progress=False, device="cpu")
    row = [r for r in res["history"] if r["kind"] == "eval"][-1]
    tr, _ = prepare(cfg, torch.device("cpu"))
    y = tr.test_y
    assert len(row["class_acc"]) == 10
    # the classes' accuracies weighted by their counts give the accuracy
    counts = torch.bincount(y, minlength=10).tolist()
    assert sum(a * n for a, n in zip(row["class_acc"], counts)) / len(y) == \
        pytest.approx(row["acc"], abs=1e-5)
    per = next(iter(row["agreement"].values()))["per_class"]
    assert all(0 <= v["a_correct"] <= 1 and v["agree_correct"] <= min(v["a_correct"],
                                                                       v["b_correct"]) + 1e-9
               for v in per.values())
