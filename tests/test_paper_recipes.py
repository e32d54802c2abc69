"""The ``paper`` profile as the papers' official code ran it (issue 13): each recipe's values
against the official ones, named with the repository and file they come from, and the engine
pieces only those recipes switch on (a 10x head, AdamW, a warm-up, pooled batches, ...)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import semibook as sb
from semibook.engine.step import build_optimizer
from semibook.engine.fit import prepare
from semibook.engine.schedules import lr_factor, set_step_hparams
from tests.conftest import seg_cfg

SEG = ("voc", "cityscapes", "fashion-scenes")


def paper(method, dataset, labels=None):
    labels = labels or {"cifar10": 4000, "fashion-mnist": 1000, "voc": 1322,
                        "cityscapes": 372, "fashion-scenes": 50}[dataset]
    return sb.make_config(method, dataset, labels, 0, "paper")


# -- MixMatch: google-research/mixmatch ----------------------------------------------------------

def test_mixmatch_paper_recipe_is_the_official_one():
    c = paper("mixmatch", "cifar10", 250)
    # mixmatch.py: batch 64, lr 0.002, train_kimg 1 << 16 (2^26 images / 64 = 2^20 steps),
    # wd 0.02, ema 0.999, beta 0.75 (README command), w_match 75 (README command for
    # cifar10), warmup_kimg 1024 of 65,536 (1/64); nu 2 (K); T 0.5
    assert (c.batch_l, c.batch_u, c.lr, c.steps) == (64, 64, 0.002, 2**20)
    assert (c.decoupled_wd, c.ema_decay, c.optimizer) == (0.02, 0.999, "adam")
    assert c.hparams == dict(K=2, T=0.5, alpha=0.75, lambda_u=75.0, rampup_frac=1 / 64)


# -- Mean Teacher: CuriousAI/mean-teacher ----------------------------------------------------------

@pytest.mark.parametrize("dataset", ["cifar10", "fashion-mnist"])
def test_mean_teacher_paper_recipe_is_the_cifar10_final_eval_runner(dataset):
    c = paper("mean_teacher", dataset)
    h = c.hparams
    # tensorflow/experiments/cifar10_final_eval.py: minibatch_size 100 with
    # n_labeled_per_batch 'vary' (drawn from all the data), training_length 150000,
    # rampdown_length 25000, ema_decay_during_rampup 0.999, adam_beta_2_during_rampup 0.999,
    # max_consistency_cost 100.0 * n_labeled / 50000 (the label share is applied in the step)
    assert c.steps == 150000 and c.batch_u == 100 and h["pooled_batches"] is True
    assert h["rampdown_frac"] * c.steps == pytest.approx(25000)
    assert h["ema_rampup"] == h["ema_after"] == 0.999 and h["adam_beta2_rampup"] == 0.999
    assert h["consistency"] == 100.0
    # tensorflow/mean_teacher/model.py DEFAULT_HYPERPARAMS: rampup_length 40000,
    # max_learning_rate 0.003, input_noise 0.15; nn.random_translate(net, scale=2) (reflect)
    assert h["rampup_frac"] * c.steps == pytest.approx(40000)
    assert (c.optimizer, c.lr, c.lr_schedule, h["noise"]) == ("adam", 0.003, "mean_teacher", 0.15)
    assert c.augment_pad == 2
    # datasets/cifar10.py Cifar10ZCA (the runner's data): GCN + ZCA-whitened CIFAR-10
    assert h.get("zca", False) is (dataset == "cifar10")


def test_whitening_is_the_official_gcn_and_zca():
    """An independent numpy version of preprocess_cifar10.py (global_contrast_normalize with
    scale 55, create_zca with filter_bias 0.1) on random images gives the same inputs."""
    import numpy as np
    from semibook.data.transforms import Whitening
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (300, 3, 4, 4), dtype=np.uint8))
    X = x.reshape(300, -1).numpy().astype(np.float64)
    X = X - X.mean(1)[:, None]
    X /= (np.sqrt((X ** 2).sum(1)) / 55.0)[:, None]
    D, E = np.linalg.eigh(np.cov(X.T) + 0.1 * np.eye(X.shape[1]))
    W = E @ np.diag(D ** -0.5) @ E.T
    want = (X - X.mean(0)) @ W
    w = Whitening(x, chunk=128)  # chunked sums agree with the one-pass covariance
    got = w(x)
    assert got.shape == x.shape
    assert np.allclose(got.reshape(300, -1).numpy(), want, atol=1e-3)
    # a new image is whitened with the training set's statistics
    y = torch.from_numpy(rng.integers(0, 256, (5, 3, 4, 4), dtype=np.uint8))
    Y = y.reshape(5, -1).numpy().astype(np.float64)
    Y = Y - Y.mean(1)[:, None]
    Y /= (np.sqrt((Y ** 2).sum(1)) / 55.0)[:, None]
    assert np.allclose(w(y).reshape(5, -1).numpy(), (Y - X.mean(0)) @ W, atol=1e-3)


def test_zca_inputs_reach_training_and_evaluation_whitened(tiny):
    from semibook.data.transforms import Whitening
    cfg = sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "smoke", augment_pad=0,
                         **tiny, hparams={"zca": True})
    tr, _ = prepare(cfg, torch.device("cpu"))
    assert isinstance(tr.data.whiten, Whitening)
    idx = tr.data.indices(0, len(tr.data.x_l), cfg.batch_l, 0)
    want = tr.data.whiten(tr.data.x_l[idx])
    batch = tr.data.batch(0, 1, 1)
    for got, w in zip(batch.x_l, want):  # no translation: each view is the image or its mirror
        assert torch.allclose(got, w, atol=1e-5) or torch.allclose(got, w.flip(2), atol=1e-5)
    assert torch.allclose(tr.prep(tr.test_x[:4]), tr.data.whiten(tr.test_x[:4]))
    plain = prepare(sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "smoke", **tiny),
                    torch.device("cpu"))[0]
    assert plain.data.whiten is None  # standardised per channel, as before


@pytest.mark.parametrize("dataset", SEG)
def test_segmentation_mean_teacher_paper_recipe_is_torchsemisegs_baseline(dataset):
    c = paper("mean_teacher", dataset)
    # charlesCXK/TorchSemiSeg exp.voc/voc8.res50v3+.MeanTeacher/config.py: unsup_weight 100,
    # ema_decay 0.99; network.py: one input for both branches; train.py: no ramp-up
    assert c.hparams["consistency"] == 100.0 and c.hparams["same_input"] is True
    assert c.hparams["ema_rampup"] == c.hparams["ema_after"] == 0.99
    assert c.arch == "deeplabv3plus-r50" and (c.batch_l, c.batch_u) == (8, 8)


# -- Hung et al.: hfslyc/AdvSemiSeg ------------------------------------------------------------

@pytest.mark.parametrize("dataset", SEG)
def test_adversarial_paper_recipe_is_advsemisegs_command(dataset):
    c = paper("adversarial", dataset)
    h = c.hparams
    # train.py: BATCH_SIZE 10, LEARNING_RATE 2.5e-4 (x10 on layer5, model/deeplab.py
    # optim_parameters), MOMENTUM 0.9, WEIGHT_DECAY 0.0005, POWER 0.9, LEARNING_RATE_D 1e-4
    # (Adam, betas (0.9, 0.99)), LAMBDA_SEMI_ADV 0.001
    assert (c.batch_l, c.batch_u, c.lr, c.momentum, c.weight_decay) == (10, 10, 2.5e-4, 0.9, 5e-4)
    assert (c.optimizer, c.nesterov, c.lr_schedule) == ("sgd", False, "poly")
    assert h["head_lr_mult"] == 10.0 and h["lr_d"] == 1e-4 and h["lambda_adv_u"] == 0.001
    # README's training command: --num-steps 20000 --lambda-adv-pred 0.01 --lambda-semi 0.1
    # --semi-start 5000 --mask-T 0.2, and neither --random-scale nor --random-mirror
    assert c.steps == 20000 and h["semi_start_frac"] * c.steps == 5000
    assert (h["lambda_adv"], h["lambda_semi"], h["T_semi"]) == (0.01, 0.1, 0.2)
    assert c.augment_scale == (1.0, 1.0) and h["flip"] is False
    # D_REMAIN = True (and --D-remain is type=bool, so no command turns it off): D's fake maps
    # include the unlabeled predictions; the benchmark's profiles leave it off
    assert h["d_remain"] is True
    assert "d_remain" not in sb.make_config("adversarial", dataset, 100, 0, "full").hparams


# -- CPS: charlesCXK/TorchSemiSeg --------------------------------------------------------------

@pytest.mark.parametrize("method,dataset,lam", [
    # exp.voc/voc8.res50v3+.CPS/config.py cps_weight 1.5; ...CPS+CutMix/config.py cps_weight 1
    ("cps", "voc", 1.5), ("cps_cutmix", "voc", 1.0), ("cps", "fashion-scenes", 1.5),
    # exp.city/city8.res50v3+.CPS/config.py cps_weight 6; ...CPS+CutMix/config.py cps_weight 5
    ("cps", "cityscapes", 6.0), ("cps_cutmix", "cityscapes", 5.0)])
def test_cps_paper_weight_is_the_official_configs_per_dataset(method, dataset, lam):
    assert paper(method, dataset).hparams["lambda_cps"] == lam


def test_ohem_cross_entropy_counts_the_hard_pixels_and_at_least_min_kept():
    from semibook.losses import ohem_cross_entropy
    # 2 classes, 6 pixels: the probability of each pixel's label, and one ignored pixel
    p_label = torch.tensor([0.1, 0.5, 0.69, 0.8, 0.9, 0.95, 0.3])
    target = torch.tensor([0, 1, 0, 1, 0, 1, 255])
    p1 = torch.where(target == 1, p_label, 1 - p_label)
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)], 1)[:, :, None, None].permute(
        2, 1, 0, 3)  # (1, 2, 7, 1)
    y = target[None, :, None]
    nll = -torch.log(p_label)

    def loss(thresh, k):
        return ohem_cross_entropy(logits, y, 255, thresh, k)
    # below the bar: the first three pixels (the ignored one never counts)
    assert torch.isclose(loss(0.7, 0), nll[:3].mean())
    assert torch.isclose(loss(0.7, 2), nll[:3].mean())  # 3 hard pixels >= min_kept
    # too few hard pixels: the bar rises to the 5th smallest label probability (0.9)
    assert torch.isclose(loss(0.7, 5), nll[:5].mean())
    # fewer labeled pixels than min_kept: every labeled pixel, as plain cross-entropy
    plain = F.cross_entropy(logits, y, ignore_index=255)
    assert torch.isclose(loss(0.7, 7), plain) and torch.isclose(plain, nll[:6].mean())
    assert torch.isclose(loss(1.0, 0), plain)


def test_cps_cityscapes_paper_recipe_uses_ohem_on_the_supervised_loss(tiny_scenes,
                                                                      monkeypatch):
    import semibook.methods.cps as cps
    for m in ("cps", "cps_cutmix"):
        h = paper(m, "cityscapes").hparams
        # exp.city/*/train.py: ProbOhemCrossEntropy2d(thresh=0.7, min_kept=50000 * batch_size
        # // world_size), i.e. 50,000 pixels per image of each GPU's share
        assert (h["ohem_thresh"], h["ohem_min_kept"]) == (0.7, 50000)
        assert "ohem_thresh" not in paper(m, "voc").hparams  # exp.voc: plain cross-entropy
    calls = []

    def spy(logits, target, ignore, thresh, min_kept):
        calls.append((len(target), thresh, min_kept))
        return F.cross_entropy(logits.float(), target, ignore_index=ignore)
    monkeypatch.setattr(cps, "ohem_cross_entropy", spy)
    for hp, want in (({}, 0), ({"ohem_thresh": 0.7, "ohem_min_kept": 30}, 2)):
        calls.clear()
        cfg = seg_cfg("cps", tiny_scenes, hparams=hp)
        tr, _ = prepare(cfg, torch.device("cpu"))
        batch = tr.data.batch(0, 1, 1)
        tr.method.train().training_step(batch, 0)
        assert len(calls) == want  # both networks' supervised losses, and nothing else
        assert all(c == (len(batch.x_l), 0.7, 30 * len(batch.x_l)) for c in calls)


def test_cps_paper_optimisation_is_the_official_scripts_per_dataset():
    voc, city = paper("cps", "voc"), paper("cps_cutmix", "cityscapes")
    for c in (voc, city):
        # config.py: lr_power 0.9, momentum 0.9, weight_decay 1e-4; script.sh batch_size 8
        # (dataloader.py splits it over the GPUs); pretrained resnet50_v1c, DeepLabV3+
        assert (c.optimizer, c.momentum, c.weight_decay, c.lr_schedule) == ("sgd", 0.9, 1e-4,
                                                                           "poly")
        assert (c.batch_l, c.batch_u, c.arch) == (8, 8, "deeplabv3plus-r50")
    # exp.voc: script.sh learning_rate 0.0025 on NGPUS 4, train.py base_lr = lr * world_size;
    # config.py nepochs 34, niters_per_epoch = (10582 - 10582 // 8) // 8 = 1157
    assert voc.lr == pytest.approx(0.01) and voc.steps == 34 * ((10582 - 10582 // 8) // 8)
    # exp.city: script.sh learning_rate 0.02 (train.py does not scale it), nepochs 137,
    # niters_per_epoch = (2975 - 2975 // 8) // 8 = 325
    assert city.lr == 0.02 and city.steps == 137 * ((2975 - 2975 // 8) // 8)


# -- Dual Teacher: naver-ai/dual-teacher -------------------------------------------------------

@pytest.mark.parametrize("dataset", SEG)
def test_dual_teacher_paper_recipe_is_the_official_ade20k_run(dataset):
    c = paper("dual_teacher", dataset)
    h = c.hparams
    # tools/train.py: batch_size 4 per GPU, 2 GPUs (dist_train.sh), max_iters 50000,
    # threshold=0.95, loss_dc * 0.2, alpha_teacher=0.99, head group lr * 10
    assert (c.batch_l, c.batch_u, c.steps) == (8, 8, 50000)
    assert (h["tau"], h["lambda_ic"], h["ema"], h["head_lr_mult"]) == (0.95, 0.2, 0.99, 10.0)
    # local_configs/segformer/B1/segformer.b1.512x512.ade.160k.py: AdamW lr 0.00006,
    # weight_decay 0.01, poly power 1.0, linear warm-up 1500 iterations from ratio 1e-6
    assert (c.optimizer, c.lr, c.weight_decay, c.lr_schedule) == ("adamw", 6e-5, 0.01, "poly")
    assert (h["poly_power"], h["warmup_steps"], h["warmup_ratio"]) == (1.0, 1500, 1e-6)
    assert h["turn_steps"] == 0  # an epoch: one pass over the labeled loader
    # seg_core/model.py get_param_groups: the encoder's "norm" parameters in a group with
    # weight_decay 0.0 (tools/train.py)
    assert h["no_decay_norm"] is True


def test_full_and_smoke_profiles_switch_none_of_the_paper_only_pieces():
    paper_only = {"head_lr_mult", "poly_power", "warmup_steps", "warmup_ratio", "flip",
                  "pooled_batches", "adam_beta2_rampup", "same_input", "no_decay_norm",
                  "d_remain", "ohem_thresh", "ohem_min_kept", "zca"}
    from semibook.catalog import DATASET_TASKS
    from semibook.methods import METHODS
    for m, cls in METHODS.items():
        for ds, task in DATASET_TASKS.items():
            if cls.supports(task):
                for prof in ("full", "smoke"):
                    labels = {"classification": 250, "segmentation": 50}[task]
                    assert not paper_only & set(sb.make_config(m, ds, labels, 0, prof).hparams)


# -- the engine pieces the recipes switch on -----------------------------------------------------

def test_head_lr_mult_trains_the_decoder_and_classifier_at_ten_times_the_rate(tiny_scenes):
    cfg = seg_cfg("supervised", tiny_scenes, optimizer="sgd", lr=0.01,
                  hparams={"head_lr_mult": 10.0})
    tr, _ = prepare(cfg, torch.device("cpu"))
    net = tr.method.model[1]
    head = tr.method.head_parameters()
    assert {id(p) for p in head} == {id(p) for p in net.parameters()} - \
        {id(p) for p in net.encoder.parameters()}
    opt = build_optimizer(cfg, tr.method.trainable_parameters(), head=head)
    lr = set_step_hparams(opt, cfg, 3)
    body_g, head_g = opt.param_groups
    assert body_g["lr"] == pytest.approx(lr) and head_g["lr"] == pytest.approx(10 * lr)
    assert {id(p) for p in head_g["params"]} == {id(p) for p in head}
    plain = build_optimizer(seg_cfg("supervised", tiny_scenes), tr.method.trainable_parameters(),
                            head=head)
    assert len(plain.param_groups) == 1  # without the hparam: one group, as before


def test_no_decay_norm_keeps_the_encoders_norm_layers_out_of_weight_decay(tiny_scenes):
    """Dual Teacher's official optimiser: encoder weights decay, the encoder's normalisation
    layers do not (both at the base rate), the decoder and classifier decay at 10x the rate."""
    cfg = seg_cfg("supervised", tiny_scenes, optimizer="adamw", lr=0.01, weight_decay=0.5,
                  hparams={"head_lr_mult": 10.0, "no_decay_norm": True})
    tr, _ = prepare(cfg, torch.device("cpu"))
    m = tr.method
    enc = tr.method.model[1].encoder
    norms = [p for mod in enc.modules() if isinstance(mod, torch.nn.BatchNorm2d)
             for p in mod.parameters(recurse=False)]
    assert norms and {id(p) for p in m.encoder_norm_parameters()} == {id(p) for p in norms}
    opt = build_optimizer(cfg, m.trainable_parameters(), head=m.head_parameters(),
                          no_decay=m.encoder_norm_parameters())
    lr = set_step_hparams(opt, cfg, 3)
    body_g, norm_g, head_g = opt.param_groups
    assert {id(p) for p in norm_g["params"]} == {id(p) for p in norms}
    assert {id(p) for p in head_g["params"]} == {id(p) for p in m.head_parameters()}
    assert norm_g["weight_decay"] == 0.0 and body_g["weight_decay"] == head_g["weight_decay"]
    assert (body_g["lr"], norm_g["lr"], head_g["lr"]) == pytest.approx((lr, lr, 10 * lr))
    before = [p.detach().clone() for p in m.trainable_parameters()]
    for p in m.trainable_parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # no gradient: only the decay moves a weight
    moved = {id(p) for p, b in zip(m.trainable_parameters(), before)
             if not torch.equal(p.detach(), b) and b.abs().sum() > 0}
    assert not moved & {id(p) for p in norms}
    assert {id(p) for p in body_g["params"] if p.abs().sum() > 0} <= moved
    # without the hparam the norm layers decay like every other weight
    plain = build_optimizer(seg_cfg("supervised", tiny_scenes, optimizer="adamw"),
                            m.trainable_parameters(), no_decay=m.encoder_norm_parameters())
    assert len(plain.param_groups) == 1


def test_classification_has_no_head_group(tiny):
    cfg = sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke", **tiny)
    assert prepare(cfg, torch.device("cpu"))[0].method.head_parameters() == []


def test_adamw_decays_decoupled_from_the_gradient():
    cfg = sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke", optimizer="adamw",
                         lr=0.1, weight_decay=0.5)
    w = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer(cfg, [w])
    assert isinstance(opt, torch.optim.AdamW)
    w.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((3,), 1 - 0.1 * 0.5))  # no gradient, only decay


def test_poly_power_and_linear_warm_up():
    base = sb.make_config("dual_teacher", "fashion-scenes", 16, 0, "smoke")
    cfg = sb.make_config("dual_teacher", "fashion-scenes", 16, 0, "smoke", steps=100,
                         hparams={"poly_power": 1.0, "warmup_steps": 10, "warmup_ratio": 1e-6})
    assert lr_factor(cfg, 0) == pytest.approx(1e-6)
    assert lr_factor(cfg, 5) == pytest.approx(1 - 0.5 * (1 - 1e-6))
    assert lr_factor(cfg, 10) == pytest.approx(0.9) and lr_factor(cfg, 60) == pytest.approx(0.4)
    base.steps = 100
    assert lr_factor(base, 60) == pytest.approx(0.4 ** 0.9)  # the default stays DeepLab's


def test_mean_teacher_adam_beta2_during_ramp_up_follows_the_hparam(tiny):
    def beta2(**hp):
        cfg = sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "smoke", **tiny,
                             hparams=hp)
        opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(1))])
        set_step_hparams(opt, cfg, 0)
        return opt.param_groups[0]["betas"][1]
    assert beta2() == 0.99 and beta2(adam_beta2_rampup=0.999) == 0.999


def test_pooled_batches_draw_from_all_images_with_the_labeled_ones_labeled(fake_cifar):
    cfg = sb.make_config("mean_teacher", "cifar10", 20, 0, "smoke", data_root=str(fake_cifar),
                         eval_size=0, track_size=16, batch_u=30,
                         hparams={"pooled_batches": True})
    tr, split = prepare(cfg, torch.device("cpu"))
    data = tr.data
    labeled = set(split.labeled.tolist())
    counts = []
    for step in range(5):  # one epoch of all 150 images
        b = data.batch(step, 2, 2)
        assert b.pooled and len(b.y_l) == 30 and len(b.views_u) == 2
        idx = data.indices(1, 150, 30, step)
        # the pool is the labeled images first, then the unlabeled ones
        orig = torch.cat([torch.as_tensor(split.labeled), torch.as_tensor(split.unlabeled)])[idx]
        is_l = torch.tensor([int(i) in labeled for i in orig])
        assert torch.equal(b.y_l >= 0, is_l)
        assert torch.equal(b.y_l[is_l], b.y_u[is_l])  # labels where labeled, -1 elsewhere
        counts.append(int(is_l.sum()))
    assert sum(counts) == 20 and len(set(counts)) > 1  # every labeled image once, varying counts

    # the step: summed CE of the labeled ones over the whole batch, the consistency weight
    # scaled by the label share (100 x n_labeled / N)
    b = data.batch(0, 2, 2)
    loss, logs = tr.method.training_step(b, 10**6)
    assert tr.method.label_share == pytest.approx(20 / 50000)
    assert logs["w_cons"] == pytest.approx(cfg.hparams["consistency"] * 20 / 50000)
    n_l = int((b.y_l >= 0).sum())
    assert 0 < n_l < 30 and math.isfinite(float(loss.detach()))
    assert float(logs["labeled_share"]) == pytest.approx(n_l / 30)
    # the supervised term is the labeled images' CE summed over the whole batch of 30: the
    # same step's student input again (a fresh batch of step 0 replays its generator)
    from semibook.data.transforms import gaussian_noise
    again = data.batch(0, 2, 2)
    x = gaussian_noise(again.views_u[0], again.gen, cfg.hparams["noise"])
    with torch.no_grad():
        logits = tr.method.model(x)
    ce_sum = F.cross_entropy(logits, again.y_l, ignore_index=-1, reduction="sum") / 30
    assert float(logs["loss_sup"]) == pytest.approx(float(ce_sum), rel=1e-4)
    ce_mean = F.cross_entropy(logits, again.y_l, ignore_index=-1)
    assert float(logs["loss_sup"]) != pytest.approx(float(ce_mean), rel=1e-3)


def test_same_input_mean_teacher_is_zero_for_a_teacher_equal_to_its_student(tiny_scenes):
    def cons(**hp):
        cfg = seg_cfg("mean_teacher", tiny_scenes, hparams=hp)
        tr, _ = prepare(cfg, torch.device("cpu"))
        m = tr.method
        m.teacher.load_state_dict(m.model.state_dict())
        _, logs = m.training_step(tr.data.batch(0, 1, 1), 0)
        return logs
    same = cons(same_input=True, consistency=100.0)
    assert float(same["loss_cons"]) == pytest.approx(0.0, abs=1e-7)
    assert same["w_cons"] == 100.0  # no ramp-up
    assert float(cons()["loss_cons"]) > 1e-6  # the book's version: strong view vs weak view


def test_no_flip_and_no_rescale_leave_the_weak_view_as_the_image(tiny_scenes):
    cfg = seg_cfg("supervised", tiny_scenes, augment_scale_min=1.0, augment_scale_max=1.0,
                  hparams={"flip": False})
    tr, _ = prepare(cfg, torch.device("cpu"))
    il = tr.data.indices(0, len(tr.data.x_l), cfg.batch_l, 0)
    b = tr.data.batch(0, 1, 0)
    assert torch.allclose(b.x_l, tr.data.x_l[il].float() / 255, atol=1e-5)
    assert torch.equal(b.y_l, tr.data.y_l[il])


def test_dual_teacher_turn_of_zero_is_one_pass_over_the_labeled_set(tiny_scenes):
    cfg = seg_cfg("dual_teacher", tiny_scenes, hparams={"turn_steps": 0})
    m = prepare(cfg, torch.device("cpu"))[0].method
    assert m.hp["turn_steps"] == 16 // cfg.batch_l
