import json

import numpy as np
import pytest
import torch

import semibook as sb
from semibook.data.splits import load_or_make_split
from semibook.engine.checkpoint import load_checkpoint
from semibook.engine.fit import fit, prepare
from tests.conftest import seg_cfg


def test_segmentation_split_is_a_seeded_subset_written_to_a_file(tmp_path):
    y = torch.zeros(50, 8, 8, dtype=torch.long)
    a = load_or_make_split("scenes", y, 10, 0, 11, tmp_path / "a")
    b = load_or_make_split("scenes", y, 10, 0, 11, tmp_path / "b")
    c = load_or_make_split("scenes", y, 10, 1, 11, tmp_path / "c")
    assert a.path.read_bytes() == b.path.read_bytes() and len(a.labeled) == 10
    assert not np.array_equal(a.labeled, c.labeled)
    assert not set(a.labeled) & set(a.unlabeled) and len(a.unlabeled) == 40


def test_segmentation_batch_views_are_aligned_and_seeded(tiny_scenes):
    cfg = seg_cfg("supervised", tiny_scenes)
    tr, _ = prepare(cfg, torch.device("cpu"))
    b = tr.data.batch(2, 2, 1)
    assert b.x_l.shape == (4, 3, 64, 64) and b.y_l.shape == (4, 64, 64)
    assert 0 <= b.x_l.min() and b.x_l.max() <= 1  # [0, 1]: the model normalises
    assert len(b.ys_l) == 2 and not torch.equal(b.ys_l[0], b.ys_l[1])
    assert set(b.y_l.unique().tolist()) <= set(range(11)) | {255}
    again = prepare(cfg, torch.device("cpu"))[0].data.batch(2, 2, 1)
    assert torch.equal(again.x_l, b.x_l) and torch.equal(again.y_u, b.y_u)


def test_weak_view_rescales_within_the_configs_range(tiny_scenes):
    # zooming out (factor < 1) leaves a border outside the image, labeled ignore; a factor of
    # exactly 1 only crops and flips, so every pixel keeps a class
    def ignored(lo, hi):
        cfg = seg_cfg("supervised", tiny_scenes, augment_scale_min=lo, augment_scale_max=hi)
        tr, _ = prepare(cfg, torch.device("cpu"))
        return (tr.data.batch(0, 1, 0).y_l == 255).float().mean().item()
    assert ignored(1.0, 1.0) == 0
    assert 0.3 < ignored(0.5, 0.5) < 0.9  # three quarters of the crop lies outside the image
    with pytest.raises(sb.ConfigError, match="augment scale range"):
        seg_cfg("supervised", tiny_scenes, augment_scale_min=1.5, augment_scale_max=1.0)


def test_training_views_take_the_configs_crop(tiny_scenes):
    cfg = seg_cfg("supervised", tiny_scenes, crop_size=24)
    tr, _ = prepare(cfg, torch.device("cpu"))
    b = tr.data.batch(0, 1, 1)
    assert b.x_l[0].shape[-2:] == (24, 24) and b.y_l.shape[-2:] == (24, 24)
    assert b.x_u[0].shape[-2:] == (24, 24)
    side = tr.data.x_l.shape[-1]
    assert side > 24
    for bad in (-1, 2.5, True):
        with pytest.raises(sb.ConfigError, match="crop_size"):
            seg_cfg("supervised", tiny_scenes, crop_size=bad)


def test_fashion_scenes_use_their_own_recipe_and_the_paper_profile_the_papers():
    own = sb.make_config("cps", "fashion-scenes", 50, 0, "full")
    paper = sb.make_config("cps", "fashion-scenes", 50, 0, "paper")
    assert (own.optimizer, own.augment_scale_min, own.augment_scale_max) == ("adam", 0.8, 1.25)
    assert (paper.optimizer, paper.lr, paper.augment_scale_min, paper.augment_scale_max) == (
        "sgd", 0.01, 0.5, 2.0)
    assert own.lr_schedule == paper.lr_schedule == "poly"


def test_segmentation_run_reports_miou_and_resumes_bit_exact(tiny_scenes, tmp_path):
    cfg = seg_cfg("supervised", tiny_scenes)
    whole = fit(cfg, tmp_path / "whole", progress=False, device="cpu")
    fit(cfg, tmp_path / "parts", progress=False, device="cpu", stop_after=3)
    resumed = fit(cfg, tmp_path / "parts", resume=True, progress=False, device="cpu")
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["method"]
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["method"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    ev = [r for r in whole["history"] if r["kind"] == "eval"]
    assert whole["metric"] == "miou" and 0 <= ev[-1]["miou"] <= 1 and len(ev[-1]["iou"]) == 5
    assert whole["best"]["miou"] == max(r["miou"] for r in ev)
    assert [r["miou"] for r in ev] == [r["miou"] for r in resumed["history"] if r["kind"] == "eval"]


def test_classification_only_methods_refuse_segmentation(tiny_scenes):
    with pytest.raises(sb.ConfigError, match="no segmentation version.*supervised"):
        seg_cfg("mixmatch", tiny_scenes)


@pytest.mark.parametrize("name", ["cps", "cps_cutmix"])
def test_cps_trains_both_networks_from_each_others_pseudo_labels(name, tiny_scenes):
    cfg = seg_cfg(name, tiny_scenes)
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    # differently initialised networks
    assert not torch.equal(next(m.model.parameters()), next(m.model2.parameters()))
    batch = tr.data.batch(0, m.views_l, m.views_u)
    loss, logs = m.training_step(batch, 0)
    assert torch.isfinite(loss) and logs["loss_cps"] > 0
    loss.backward()
    for net in (m.model, m.model2):
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    # λ = 0 leaves only the supervised gradient: the cross term must change it
    g_with = [p.grad.clone() for p in m.model.parameters()]
    m.zero_grad(set_to_none=True)
    m.hp["lambda_cps"] = 0.0
    m.training_step(batch, 0)[0].backward()
    assert any(not torch.allclose(a, p.grad) for a, p in zip(g_with, m.model.parameters()))


def test_cps_pseudo_labels_carry_no_gradient(tiny_scenes, monkeypatch):
    import semibook.methods.cps as cps
    targets = []
    orig = cps.CPS.ce

    def spy(self, logits, target):
        targets.append(target)
        return orig(self, logits, target)
    monkeypatch.setattr(cps.CPS, "ce", spy)
    cfg = seg_cfg("cps", tiny_scenes)
    tr, _ = prepare(cfg, torch.device("cpu"))
    tr.method.training_step(tr.data.batch(0, 1, 1), 0)
    assert len(targets) == 4 and all(not t.requires_grad and t.dtype == torch.long for t in targets)


def test_cps_run_tracks_agreement_of_the_two_networks(tiny_scenes, tmp_path):
    res = fit(seg_cfg("cps", tiny_scenes), tmp_path / "cps", progress=False, device="cpu")
    ag = [r for r in res["history"] if r["kind"] == "eval"][-1]["agreement"]["net1-vs-net2"]
    assert ag["agree_correct"] + ag["agree_wrong"] + ag["disagree"] == pytest.approx(1.0)
    assert ag["n"] == 8 * 64 * 64  # every pixel of the tracked images
    assert "miou_net2" in res["history"][-1]


def test_mean_teacher_segmentation_student_learns_teacher_does_not(tiny_scenes):
    cfg = seg_cfg("mean_teacher", tiny_scenes, steps=10)
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    assert m.views_l == m.views_u == 1 and m.ema_pairs(0)[0][2] == 0.99 == m.ema_pairs(9)[0][2]
    batch = tr.data.batch(9, 1, 1)
    loss, logs = m.training_step(batch, 9)
    loss.backward()
    assert torch.isfinite(loss) and logs["loss_cons"] > 0
    assert all(p.grad is None for p in m.teacher.parameters())
    g = [p.grad.clone() for p in m.model.parameters()]
    m.zero_grad(set_to_none=True)
    m.hp["consistency"] = 0.0
    m.training_step(batch, 9)[0].backward()
    assert any(not torch.allclose(a, p.grad) for a, p in zip(g, m.model.parameters()))


def test_adversarial_network_step_never_trains_the_discriminator(tiny_scenes):
    cfg = seg_cfg("adversarial", tiny_scenes, steps=8)
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    batch = tr.data.batch(5, 1, 1, m.labels_extra)
    loss, logs = m.training_step(batch, 5)
    loss.backward()
    assert torch.isfinite(loss) and 0 <= float(logs["conf_share"]) <= 1
    assert all(p.grad is None for p in m.D.parameters())
    assert all(p.grad is not None for p in m.model.parameters())
    # the discriminator's own step changes D and nothing else
    g_before = {k: v.clone() for k, v in m.model.state_dict().items()}
    d_before = [p.clone() for p in m.D.parameters()]
    out = m.after_step(5)
    assert torch.isfinite(out["loss_d"])
    assert all(torch.equal(v, m.model.state_dict()[k]) for k, v in g_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(d_before, m.D.parameters()))


def test_adversarial_masked_ce_starts_at_semi_start(tiny_scenes):
    cfg = seg_cfg("adversarial", tiny_scenes, steps=8, hparams={"T_semi": 0.0})
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method.train()
    assert m.semi_start == 2
    grads = {}
    for step in (1, 2):
        for lam in (0.0, 0.1):
            m.zero_grad(set_to_none=True)
            m.hp["lambda_semi"] = lam
            m.training_step(tr.data.batch(step, 1, 1), step)[0].backward()
            grads[step, lam] = [p.grad.clone() for p in m.model.parameters()]
    same = lambda a, b: all(torch.allclose(x, y) for x, y in zip(a, b))
    assert same(grads[1, 0.0], grads[1, 0.1])  # before semi_start the weight plays no part
    assert not same(grads[2, 0.0], grads[2, 0.1])


def test_adversarial_resume_restores_the_discriminator_optimizer(tiny_scenes, tmp_path):
    cfg = seg_cfg("adversarial", tiny_scenes)
    fit(cfg, tmp_path / "whole", progress=False, device="cpu")
    fit(cfg, tmp_path / "parts", progress=False, device="cpu", stop_after=3)
    fit(cfg, tmp_path / "parts", resume=True, progress=False, device="cpu")
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")
    assert all(torch.equal(v, b["method"][k]) for k, v in a["method"].items())
    da, db = a["extra_optimizers"]["discriminator"], b["extra_optimizers"]["discriminator"]
    assert da["param_groups"][0]["lr"] == db["param_groups"][0]["lr"] < 1e-4  # poly-decayed
    for sa, sb_ in zip(da["state"].values(), db["state"].values()):
        assert all(torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb_[k])) for k in sa)


def test_dual_teacher_augmentation_never_repeats_between_turns():
    from semibook.methods.dual_teacher import augmentation_schedule
    two = augmentation_schedule(50, 0)
    assert two[0] == "cutmix" and all(a != b for a, b in zip(two, two[1:]))
    three = augmentation_schedule(200, 1, pool=("a", "b", "c"))
    assert all(a != b for a, b in zip(three, three[1:])) and set(three) == {"a", "b", "c"}
    assert augmentation_schedule(30, 1, ("a", "b", "c")) == three[:30]  # seeded per turn


def test_dual_teacher_turns_reset_and_update_only_the_active_teacher(tiny_scenes):
    cfg = seg_cfg("dual_teacher", tiny_scenes, steps=8, hparams={"turn_steps": 2})
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method
    assert [m.turn(s)[0] % 2 for s in range(8)] == [0, 0, 1, 1, 0, 0, 1, 1]
    assert sum(type(x).__name__ == "DropPath" for x in m.model.modules()) > 0
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.01)
    state = lambda net: {k: v.clone() for k, v in net.state_dict().items()}
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)
    for step in range(4):
        m.train()
        before = [state(t) for t in m.teachers]
        student_before = state(m.model)
        loss, logs = m.training_step(tr.data.batch(step, 1, 1), step)
        active = m.turn(step)[0] % 2
        if m.turn(step)[1] == 0:  # reset: the active teacher is the student at the turn's start
            assert same(state(m.teachers[active]), student_before)
        assert same(state(m.teachers[1 - active]), before[1 - active])  # the other is untouched
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for t in m.teachers for p in t.parameters())
        assert all(p.grad is not None for p in m.model.parameters())
        opt.step()
        for avg, src, d in m.ema_pairs(step):
            assert avg is m.teachers[active] and d == min(1 - 1 / (m.turn(step)[1] + 1), 0.99)
        assert logs["teacher"] == float(active)
        assert logs["classmix"] == float(m.schedule[m.turn(step)[0]] == "classmix")


def test_dual_teacher_tracks_both_teachers_and_the_student(tiny_scenes, tmp_path):
    res = fit(seg_cfg("dual_teacher", tiny_scenes), tmp_path / "dt", progress=False,
              device="cpu")
    last = [r for r in res["history"] if r["kind"] == "eval"][-1]
    assert set(last["agreement"]) == {"teacher1-vs-student", "teacher2-vs-student",
                                      "teacher1-vs-teacher2"}
    assert last["eval_model"] == "student" and "miou_teacher2" in last


def test_sliding_window_evaluation_runs_in_the_engine(tiny_scenes, tmp_path):
    res = fit(seg_cfg("supervised", tiny_scenes, steps=2, eval_every=2, eval_crop=48,
                      eval_stride=16), tmp_path / "sw", progress=False, device="cpu")
    assert 0 <= res["last"]["miou"] <= 1


def test_segmentation_results_carry_sample_maps_for_the_chapters(tiny_scenes, tmp_path):
    from semibook.engine.evaluate import decode
    cfg = seg_cfg("cps", tiny_scenes, steps=2, eval_every=2, eval_size=16)
    res = fit(cfg, tmp_path / "s", progress=False, device="cpu")
    s = res["samples"]
    pred, conf, pseudo = decode(s["test_pred"]), decode(s["track_conf"]), decode(s["track_pseudo"])
    assert pred.shape == (8, 64, 64) and conf.shape == pseudo.shape == (8, 64, 64)
    assert int(pred.max()) < 11 and int(conf.min()) >= int(255 / 11) - 1  # max softmax >= 1/C
    assert s["track_model"] == "net1-vs-net2"
    # the stored positions name the very scenes that were predicted and tracked
    tr, _ = prepare(cfg, torch.device("cpu"))
    data = tr.image_set
    assert torch.equal(data.x_test[s["test_index"]], tr.test_x[:8])
    assert torch.equal(data.x_train[s["track_index"]], tr.track_x[:8])
    assert s["test_index"] != list(range(8))  # eval_size 16 of 32: a random subset
    from semibook.widgets import explorer_from_results, threshold_stats
    box = explorer_from_results(res, data, live=False, taus=[0.0, 0.5])
    want = threshold_stats(conf.float() / 255, pseudo.long(), tr.track_y[:8].long(), [0.0, 0.5], 11)
    assert box.stats["kept"] == want["kept"] and box.stats["kept"][0] == 1.0
    right = (pseudo.long() == tr.track_y[:8].long()).float().mean().item()
    assert box.stats["accuracy"][0] == pytest.approx(right)


def test_results_of_an_older_config_still_match(tiny_scenes, tmp_path, monkeypatch):
    import json
    from semibook.engine.run import run, run_or_load
    cfg = seg_cfg("supervised", tiny_scenes, steps=2, eval_every=2)
    cfg.profile = "full"
    res = run(cfg, tmp_path / "r", progress=False)
    f = next((tmp_path / "results").glob("*.json"))
    old = json.loads(f.read_text())
    del old["config"]["eval_crop"]  # as written before the field existed
    f.write_text(json.dumps(old))
    assert run_or_load(cfg, progress=False)["loaded"] is True


def test_adversarial_tracks_its_confident_mask(tiny_scenes, tmp_path):
    res = fit(seg_cfg("adversarial", tiny_scenes, steps=2, eval_every=2), tmp_path / "a",
              progress=False, device="cpu")
    ag = [r for r in res["history"] if r["kind"] == "eval"][-1]["agreement"]["confident-mask"]
    # kept & correct + kept & wrong + dropped covers every tracked pixel
    assert ag["agree_correct"] + ag["agree_wrong"] + ag["disagree"] == pytest.approx(1.0)
    assert ag["n"] == 8 * 64 * 64
    # the discriminator's confidence map on the tracked scenes is stored, and its explorer
    # keeps at T_semi exactly the pixels the map keeps
    from semibook.engine.evaluate import decode
    from semibook.widgets import explorer_from_results
    dconf = decode(res["samples"]["track_dconf"])
    assert dconf.shape == (8, 64, 64) and dconf.dtype == torch.uint8
    tr, _ = prepare(seg_cfg("adversarial", tiny_scenes, steps=2, eval_every=2),
                    torch.device("cpu"))
    box = explorer_from_results(res, tr.image_set, live=False, taus=[0.2], conf="track_dconf")
    assert box.stats["kept"][0] == pytest.approx((dconf.float() / 255 >= 0.2).float().mean().item())
    with pytest.raises(ValueError, match="track_dconf"):
        explorer_from_results({"method": "cps", "samples": {"track_index": [0]}},
                              tr.image_set, conf="track_dconf")


def test_tracker_on_a_constructed_case():
    from semibook.tracking import agreement
    a = torch.tensor([[0, 1, 2, 2], [1, 1, 0, 2]])
    b = torch.tensor([[0, 1, 1, 2], [1, 0, 0, 2]])
    t = torch.tensor([[0, 2, 1, 255], [1, 0, 0, 2]])
    r = agreement(a, b, t, 3, ignore_index=255)
    # 7 scored pixels: agree at (0,0)✓ (0,1)✗ (1,0)✓ (1,2)✓ (1,3)✓; disagree at (0,2) (1,1)
    assert r["n"] == 7
    assert r["agree_correct"] == pytest.approx(4 / 7) and r["agree_wrong"] == pytest.approx(1 / 7)
    assert r["disagree"] == pytest.approx(2 / 7)
    # class 0: (0,0) agree ✓, (1,1) disagree, (1,2) agree ✓
    assert r["per_class"]["0"]["n"] == 3
    assert r["per_class"]["0"]["agree"] == pytest.approx(2 / 3)
    assert r["per_class"]["0"]["agree_correct"] == pytest.approx(2 / 3)
    # class 2: (0,1) agree on the wrong class 1, (1,3) agree ✓
    assert r["per_class"]["2"]["agree"] == 1.0 and r["per_class"]["2"]["agree_correct"] == 0.5


def test_provenance_names_a_results_file_by_its_path_in_the_repository(tmp_path):
    from semibook.engine.results import load_results
    from semibook.paths import results_dir
    cfg = sb.make_config("supervised", "fashion-scenes", 50, 0, "full")
    res = {"method": "supervised", "dataset": "fashion-scenes", "labels": 50, "seed": 0,
           "profile": "full", "finished": True, "history": [], "config": cfg.to_dict(),
           "device": "cpu", "git_commit": "0123456789", "git_dirty": False, "elapsed_s": 1.0}
    (results_dir() / "older").mkdir(parents=True)
    for where in (results_dir(), results_dir() / "older"):
        (where / "a.json").write_text(json.dumps(res))
    top, = load_results()
    old, = load_results(results_dir() / "older")
    assert "loaded from results/a.json;" in sb.provenance(top)
    assert "loaded from results/older/a.json;" in sb.provenance(old)
    outside = tmp_path.parent / "elsewhere.json"
    assert "loaded from elsewhere.json;" in sb.provenance(
        {**res, "results_file": str(outside), "loaded": True})


def test_load_only_mode_never_trains(tiny_scenes, isolated, monkeypatch):
    from semibook.engine.run import ResultsMissingError, run, run_or_load
    cfg = seg_cfg("supervised", tiny_scenes, steps=2, eval_every=2)
    cfg.profile = "full"
    monkeypatch.setenv("SEMIBOOK_LOAD_ONLY", "1")
    with pytest.raises(ResultsMissingError, match="--method supervised"):
        run_or_load(cfg, progress=False)
    assert not (isolated / "runs").exists()  # nothing trained, no run folder
    run(cfg, progress=False)  # a real run writes the results file; then it loads
    assert run_or_load(cfg, progress=False)["loaded"] is True


def test_provenance_names_overrides_only_where_the_run_differs_from_its_profile():
    cfg = sb.make_config("supervised", "fashion-scenes", 50, 0, "full")
    res = {"method": "supervised", "dataset": "fashion-scenes", "labels": 50, "seed": 0,
           "profile": "full", "overrides": {"steps": cfg.steps}, "config": cfg.to_dict(),
           "device": "cpu", "elapsed_s": 1.0, "git_commit": "abc"}
    assert "overrides" not in sb.provenance(res)  # made with values the profile now has
    res["config"] = dict(cfg.to_dict(), steps=cfg.steps + 1)
    res["overrides"] = {"steps": cfg.steps + 1}
    assert f"overrides {{'steps': {cfg.steps + 1}}}" in sb.provenance(res)


def test_a_run_of_an_earlier_profile_is_marked_so_in_provenance_and_tables():
    from semibook.engine.results import load_results
    from semibook.paths import results_dir
    from semibook.report import results_table
    cfg = sb.make_config("supervised", "fashion-scenes", 50, 0, "full")
    today = {"method": "supervised", "dataset": "fashion-scenes", "labels": 50, "seed": 0,
             "profile": "full", "overrides": {}, "config": cfg.to_dict(), "device": "cpu",
             "finished": True, "history": [], "elapsed_s": 1.0, "git_commit": "abc",
             "metric": "miou",
             "best": {"step": 10, "miou": 0.2}, "last": {"step": 10, "miou": 0.2}}
    # the profile has since changed its steps and learning rate; the run's own override
    # (the batch) is not a change of the profile
    then = dict(today, labels=10000, overrides={"batch_l": 4},
                config=dict(cfg.to_dict(), labels=10000, steps=4000, lr=1e-3, batch_l=4))
    results_dir().mkdir(parents=True)
    for name, r in (("today", today), ("then", then)):
        (results_dir() / f"{name}.json").write_text(json.dumps(r))
    now, old = (load_results(labels=n)[0] for n in (50, 10000))
    assert now["profile_changes"] == [] and old["profile_changes"] == ["lr", "steps"]
    assert "as it was then" not in sb.provenance(now)
    assert "profile full, overrides {'batch_l': 4} (as it was then: today's differs in lr, " \
        "steps); 4000 steps" in sb.provenance(old)
    table = results_table({"supervised": now, "ceiling": old}, ceiling="ceiling")
    assert "| supervised | full |" in table and "| ceiling | full (earlier) |" in table
    assert "(earlier): a run of its profile as it was then; today's differs in lr, steps." \
        in table
    assert "earlier" not in results_table({"supervised": now, "again": now})
