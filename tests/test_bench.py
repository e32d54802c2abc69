import dataclasses
import json

import pytest
import torch
import torch.nn as nn

import semibook as sb
from semibook.__main__ import main
from semibook.bench import CASES, ReferenceData, case_config, count_flops, reference_config
from semibook.engine.checkpoint import load_checkpoint
from semibook.engine.step import build_optimizer, speed_options, train_step
from semibook.engine.fit import fit, prepare


def test_quick_bench_runs_on_cpu_and_writes_json(tiny, tmp_path, capsys):
    out = tmp_path / "bench" / "cpu.json"
    rc = main(["bench", "--quick", "--cases", "supervised-full", "--steps", "2", "--warmup", "1",
               "--device", "cpu", "--ref-workers", "1", "--curve", "2",
               "--data-root", tiny["data_root"], "--out", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["device"].startswith("cpu") and rep["versions"]["torch"] == torch.__version__
    assert rep["quick"] and "git_commit" in rep and rep["matmul"]["best_flops_per_s"] > 0
    case = rep["cases"]["supervised-full"]
    assert case["profile"] == "smoke" and case["images_per_step"] == 16  # labeled only
    ours, ref = case["ours"], case["reference"]
    assert ours["steps"] == 2 and 0 < ours["min_s"] <= ours["median_s"] <= ours["max_s"]
    assert ours["flops_per_step"] > 0 and ours["peak_memory_bytes"] > 0
    rate = rep["matmul_by_dtype"][ours["mfu_dtype"]]["best_flops_per_s"]
    assert ours["mfu_dtype"] == ("bfloat16" if case["options"]["bf16"] else "float32")
    assert ours["mfu"] == pytest.approx(ours["flops_per_step"] / ours["median_s"] / rate)
    assert ref["mfu_dtype"] == "float32"  # the reference computes in fp32
    assert ours["images_per_s"] == pytest.approx(16 / ours["median_s"])
    assert case["speedup"] == pytest.approx(ref["median_s"] / ours["median_s"])
    assert ref["options"] == {"bf16": False, "channels_last": False, "fused": False,
                              "compile": False}
    curve = rep["loss_curves"]["supervised-full"]
    assert set(curve["curves"]["reference"]) == {"0", "1"}
    assert len(curve["curves"]["ours"]["0"]) == 2
    assert "speed-up" in capsys.readouterr().out
    assert main(["bench", "--cases", "nope", "--out", str(out)]) == 2  # names the known cases


def test_bench_writes_outside_the_repository_unless_asked(tiny, isolated, capsys):
    """By default the report goes to semibook's cache, never over the committed
    results/bench/<device>.json; --update-results writes there, and only real measurements."""
    args = ["bench", "--quick", "--cases", "supervised-full", "--steps", "1", "--warmup", "0",
            "--device", "cpu", "--no-reference", "--data-root", tiny["data_root"]]
    assert main(args) == 0
    out = isolated / "cache" / "bench" / "cpu.json"
    assert json.loads(out.read_text())["cases"].keys() == {"supervised-full"}
    assert f"wrote {out}" in capsys.readouterr().out
    assert not (isolated / "results").exists()
    assert main([*args, "--update-results"]) == 2  # --quick measures nothing
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --update-results") and "\n" not in err
    assert main(["bench", "--cases", "supervised-full", "--update-results", "--out",
                 str(out)]) == 2  # one file or the other
    assert not (isolated / "results").exists()


def test_update_results_replaces_only_the_cases_it_ran_and_a_stop_writes_nothing(
        isolated, monkeypatch):
    import semibook.bench as bench
    committed = isolated / "results" / "bench" / "cpu.json"
    committed.parent.mkdir(parents=True)
    committed.write_text(json.dumps({"quick": False, "cases": {"cps-paper": {"kept": 1},
                                                               "mixmatch-full": {"old": 1}}}))
    before = committed.read_bytes()
    monkeypatch.setattr(bench, "matmul_rate", lambda device, n=None, reps=10, dtype=None: {
        "dtype": "float32", "best_flops_per_s": 1e9})
    ran = []

    def fake_case(name, *a, **k):
        ran.append(name)
        if name == "cps-full" and "stop" in ran:
            raise KeyboardInterrupt
        t = dict(median_s=0.1, images_per_s=10.0, mfu=0.5, peak_memory_bytes=2**20)
        return {"ours": t}
    monkeypatch.setattr(bench, "bench_case", fake_case)
    ran.append("stop")  # Ctrl-C during the second case: the committed file stays as it was
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench(["mixmatch-full", "cps-full"], device="cpu", update_results=True,
                        log=lambda _: None)
    assert committed.read_bytes() == before
    assert sorted(p.name for p in committed.parent.iterdir()) == ["cpu.json"]  # no tmp left
    ran.clear()
    rep = bench.run_bench(["mixmatch-full", "cps-full"], device="cpu", update_results=True,
                          log=lambda _: None)
    assert rep["out"] == str(committed)
    cases = json.loads(committed.read_text())["cases"]
    assert cases["cps-paper"] == {"kept": 1} and "old" not in cases["mixmatch-full"]
    assert set(cases) == {"cps-paper", "mixmatch-full", "cps-full"}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("quick", [False, True])
def test_bench_cases_need_no_network(name, quick):
    """Every case builds its models from random weights (a GPU machine has no network to fetch
    the paper profile's ImageNet encoders, and the step time does not depend on them)."""
    cfg, _ = case_config(name, quick=quick)
    assert cfg.encoder_weights is None and cfg.weights_path is None


def test_flop_counter_matches_a_hand_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    x = torch.randn(2, 3, 8, 8)  # the input needs no gradient: no conv grad-input
    conv = 2 * 2 * 4 * 8 * 8 * 3 * 3 * 3  # 2 * N * C_out * H * W * C_in * k * k
    linear = 2 * 2 * 256 * 5  # 2 * N * in * out
    forward = conv + linear
    backward = conv + 2 * linear  # conv: weight grad; linear: input and weight grads
    assert count_flops(lambda: model(x)) == forward
    assert count_flops(lambda: model(x).sum().backward()) == forward + backward


def test_speed_options_are_on_for_cuda_and_inert_on_cpu(tiny):
    cfg = sb.make_config("mixmatch", "fashion-mnist", 20, 0, "smoke", **tiny)
    assert speed_options(cfg, torch.device("cpu")) == {
        "bf16": False, "channels_last": False, "fused": False, "compile": False}
    assert speed_options(cfg, torch.device("cuda")) == {
        "bf16": True, "channels_last": True, "fused": True, "compile": False}
    forced = dataclasses.replace(cfg, precision="fp32", channels_last="off",
                                 fused_optimizer="off", compile=True)
    assert speed_options(forced, torch.device("cuda")) == {
        "bf16": False, "channels_last": False, "fused": False, "compile": True}
    with pytest.raises(sb.ConfigError, match="auto, on, off"):
        sb.make_config("mixmatch", "fashion-mnist", 20, 0, "smoke", channels_last="yes")


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["method"]


def test_default_options_are_bit_exact_on_cpu_and_train_step_is_fits_step(tiny, tmp_path):
    """On the CPU the defaults equal every option off (same weights, same history), and
    ``train_step`` (what the benchmark times) is exactly the step ``fit`` runs."""
    base = sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke",
                          **{**tiny, "steps": 3, "eval_every": 3, "log_every": 3})
    off = dataclasses.replace(base, precision="fp32", channels_last="off", fused_optimizer="off")
    a = fit(base, tmp_path / "a", progress=False, device="cpu")
    b = fit(off, tmp_path / "b", progress=False, device="cpu")
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(v, wb[k]) for k, v in wa.items())
    strip = lambda h: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h]
    assert strip(a["history"]) == strip(b["history"])
    tr, _ = prepare(base, torch.device("cpu"))
    opt = build_optimizer(base, tr.method.trainable_parameters(), tr.device)
    for s in range(3):
        train_step(tr, opt, s)
    assert all(torch.equal(v, wa[k]) for k, v in tr.method.state_dict().items())


def test_forced_options_train_the_same_model_on_cpu(tiny):
    """channels-last and the fused optimizer change the memory layout and the kernels, not the
    arithmetic: the same steps give the same losses and weights to float tolerance."""
    base = sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke", **tiny)
    on = dataclasses.replace(base, channels_last="on", fused_optimizer="on")
    runs = []
    for cfg in (base, on):
        tr, _ = prepare(cfg, torch.device("cpu"))
        opt = build_optimizer(cfg, tr.method.trainable_parameters(), tr.device)
        losses = [float(train_step(tr, opt, s)[0]) for s in range(4)]
        runs.append((tr, opt, losses))
    (tr0, opt0, l0), (tr1, opt1, l1) = runs
    conv = next(m for m in tr1.method.model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert tr1.data.batch(0, 1, 0).x_l.is_contiguous(memory_format=torch.channels_last)
    assert opt1.param_groups[0]["fused"] and not opt0.param_groups[0].get("fused")
    assert l1 == pytest.approx(l0, rel=1e-4)
    for p, q in zip(tr0.method.model.parameters(), tr1.method.model.parameters()):
        assert torch.allclose(p, q, atol=1e-4)


@pytest.mark.parametrize("name", ["mixmatch-full", "cps-full"])
def test_reference_batches_match_the_engines_in_shape_and_range(name, tiny, tiny_scenes):
    cfg, images = case_config(name, quick=True, data_root=tiny["data_root"], **(
        {"eval_size": 0, "track_size": 8} if name == "cps-full" else {}))
    tr, _ = prepare(reference_config(cfg), torch.device("cpu"), images)
    m = tr.method
    ours = tr.data.batch(0, m.views_l, m.views_u)
    ref = ReferenceData(tr, m.views_l, m.views_u, workers=0).batch(0, m.views_l, m.views_u)
    for a, b in [(ours.views_l, ref.views_l), (ours.views_u, ref.views_u)]:
        assert len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype
                                        for x, y in zip(a, b))
    assert ref.y_l.shape == ours.y_l.shape and ref.y_l.dtype == ours.y_l.dtype
    x = torch.stack(ref.views_l + ref.views_u)
    if name == "mixmatch-full":  # standardised once, with the data's statistics
        x = x * tr.data.std[0] + tr.data.mean[0]
        assert torch.allclose(x * 255, (x * 255).round(), atol=1e-3)  # whole pixel values
    assert -1e-5 <= x.min() and x.max() <= 1 + 1e-5 and x.max() > 0.5
    assert torch.isfinite(m.training_step(ref, 0)[0])


def test_levers_are_timed_interleaved_and_the_chosen_setting_is_applied(tiny, monkeypatch):
    """``bench --levers``: every lever's trainer resolves its own options, the speed-ups are the
    reference's median over each lever's, and evaluation's share of a run is computed from the
    subset and whole-set timings."""
    from semibook import levers
    from semibook.engine.step import speed_options
    seen = {}
    real = levers._interleaved

    def spy(fns, rounds, first):
        times = real(fns, rounds, first)
        seen.update(times)
        return times
    monkeypatch.setattr(levers, "_interleaved", spy)
    logs = []
    res = levers.lever_case("supervised-full", rounds=3, warmup=1, quick=True,
                            levers=["reference", "channels_last", "chosen"],
                            data_root=tiny["data_root"], log=logs.append)
    assert set(seen) == {"reference", "channels_last", "chosen"}
    assert all(len(v) == 3 for v in seen.values())
    for k, row in res["levers"].items():
        assert row["speedup"] == pytest.approx(res["levers"]["reference"]["median_s"]
                                               / row["median_s"])
    assert res["levers"]["chosen"]["change"] == sb.config.FAST
    ev = res["evaluation"]
    assert 0 < ev["eval_subset"] < ev["test_images"]
    n, k, step = res["run_steps"], res["evaluations"], res["levers"]["chosen"]["median_s"]
    ev_time = (k - 1) * ev["chosen_subset_s"] + ev["chosen_whole_s"]
    assert ev["share_subset_then_whole"] == pytest.approx(ev_time / (n * step + ev_time))
    assert 0 < ev["share_subset_then_whole"] < 1 and 0 < ev["share_whole_every_time"] < 1
    assert res["threads"]["two_thread_speedup"] > 0 and len(logs) == 5
    cfg = sb.make_config("supervised", "fashion-mnist", 20, 0, "smoke", **sb.config.FAST)
    assert speed_options(cfg, torch.device("cpu")) == {
        "bf16": True, "channels_last": True, "fused": True, "compile": False}


def test_the_fast_setting_trains_close_to_float32(tiny):
    """bf16 autocast with channels-last changes the arithmetic, not the training: the first
    steps' losses stay within a few percent of float32's."""
    base = sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "smoke", **tiny)
    losses = []
    for cfg in (base, dataclasses.replace(base, **sb.config.FAST)):
        tr, _ = prepare(cfg, torch.device("cpu"))
        opt = build_optimizer(cfg, tr.method.trainable_parameters(), tr.device)
        losses.append([float(train_step(tr, opt, s)[0]) for s in range(4)])
    assert losses[1] != losses[0]  # other kernels...
    assert losses[1] == pytest.approx(losses[0], rel=0.05)  # ...the same training


def test_levers_table_and_summary_read_the_report():
    from semibook.levers import levers_summary, levers_table

    def case(ref, chosen, share, compile_s=30.0, pays=False):
        return {"levers": {"reference": {"median_s": ref, "speedup": 1.0},
                           "chosen": {"median_s": ref / chosen, "speedup": chosen},
                           "compile": {"median_s": ref, "speedup": 1.0, "compile_s": compile_s,
                                       "pays_within_run": pays}},
                "evaluation": {"reference_share": 0.12, "share_subset_then_whole": share,
                               "run_speedup": chosen + 0.5},
                "threads": {"two_thread_speedup": 1.3}}
    rep = {"cases": {"a-full": case(0.1, 1.8, 0.03), "b-full": case(0.2, 1.4, 0.06)}}
    table = levers_table(rep)
    assert "| a-full | 100 |" in table and "x1.80" in table and "12.0% → 3.0%" in table
    text = levers_summary(rep)
    assert "x1.40 (b-full) to x1.80 (a-full)" in text and "under x1.5: b-full (x1.40)" in text
    assert "at most 6.0% of a run (b-full); over 5 %: b-full (6.0%)." in text
    assert "x1.90 (b-full) to x2.30 (a-full) as fast as on the reference path" in text
    assert "paid within a run for no case" in text


def test_precision_curves_compare_the_chosen_setting_with_the_reference_on_the_same_batches(tiny):
    import numpy as np
    from semibook.levers import precision_curves
    c = precision_curves("supervised-full", steps=6, quick=True, data_root=tiny["data_root"])
    ref, fast = c["curves"]["reference"], c["curves"]["chosen"]
    assert set(ref) == set(fast) == {"0", "1"} and all(len(v) == 6 for v in ref.values())
    assert ref["0"] != fast["0"]  # bf16 arithmetic...
    # ...on the same batches: the first step's loss (before any update) agrees to bf16 precision
    assert fast["0"][0] == pytest.approx(ref["0"][0], rel=2e-2)
    gap = np.mean([np.mean(np.abs(np.array(fast[s]) - np.array(ref[s]))) for s in ("0", "1")])
    assert c["chosen_vs_reference_gap"] == pytest.approx(gap)  # window 1 at 6 steps
    assert c["within_seed_spread"] == (c["chosen_vs_reference_gap"] <= c["seed_to_seed_gap"])


def test_a_re_timing_without_curves_keeps_the_earlier_curves_with_their_provenance():
    from semibook.levers import keep_curves
    curves = {"steps": 500, "within_seed_spread": True}
    old = {"time": "2026-01-02T03:04:05", "git_commit": "abc",
           "cases": {"a-full": {"curves": curves}, "gone-full": {"curves": curves}}}
    new = {"time": "2026-02-03", "git_commit": "def",
           "cases": {"a-full": {"levers": {}}, "b-full": {"levers": {}},
                     "c-full": {"curves": {"steps": 100}}}}
    keep_curves(new, old)
    assert new["cases"]["a-full"]["curves"] == {**curves, "measured": {
        "time": "2026-01-02T03:04:05", "git_commit": "abc"}}
    assert "curves" not in new["cases"]["b-full"] and "gone-full" not in new["cases"]
    assert new["cases"]["c-full"]["curves"] == {"steps": 100}  # measured now: kept as it is
    # carried twice, the first run's provenance stays
    again = keep_curves({"time": "t3", "git_commit": "ghi", "cases": {"a-full": {}}}, new)
    assert again["cases"]["a-full"]["curves"]["measured"]["git_commit"] == "abc"
    assert keep_curves({"cases": {"a-full": {}}}, None) == {"cases": {"a-full": {}}}


def test_side_by_side_trains_one_two_thread_run_and_two_one_thread_runs(tiny, monkeypatch):
    import semibook.bench.side_by_side as sbs
    calls = []
    real = sbs._round

    def spy(case, steps, warmup, procs, threads, quick, data_root):
        calls.append((procs, threads))
        return real(case, steps, warmup, procs, threads, quick, data_root)
    monkeypatch.setattr(sbs, "_round", spy)
    res = sbs.side_by_side("supervised-full", steps=2, rounds=1, warmup=1, quick=True,
                           data_root=tiny["data_root"], log=lambda s: None)
    assert calls == [(1, 2), (2, 1)]  # real processes: one of 2 threads, then two of 1
    assert res["two_threads_steps_per_s"] > 0 and res["pair_steps_per_s"] > 0
    assert res["pair_over_two_threads"] == pytest.approx(
        res["pair_steps_per_s"] / res["two_threads_steps_per_s"])
    with pytest.raises(RuntimeError, match="failed"):  # a process that dies is reported
        real("no-such-case", 1, 0, 1, 1, True, tiny["data_root"])


def test_every_report_starts_with_the_same_header_and_times_full_cases_only():
    from semibook.bench.reports import report_header
    from semibook.engine.results import _git_commit
    head = report_header(["supervised-full"], "--levers", kind="levers", threads=1)
    assert head["kind"] == "levers" and head["threads"] == 1
    assert head["host"]["cpu"] and len(head["load_avg_at_start"]) == 3
    assert head["versions"]["torch"] and head["git_commit"] == _git_commit()["git_commit"]
    assert report_header()["time"][:2] == "20"  # no check without a flag
    for flag in ("--levers", "--side-by-side"):
        with pytest.raises(sb.ConfigError, match=f"{flag} times full-profile cases; not "
                           "mixmatch-paper"):
            report_header(["supervised-full", "mixmatch-paper"], flag)
