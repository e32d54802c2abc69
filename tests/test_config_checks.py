"""Issue 28: every config value is checked where the config is made, before any folder is
claimed: kinds, ranges, field names and the method's hyper-parameter names (with the closest
known name). And every hyper-parameter the code reads is one its method declares, so the
check never refuses a name the code uses."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import semibook as sb
from semibook.config import ENGINE_HPARAMS, ConfigError, declared_hparams
from semibook.methods import METHODS
from semibook.methods.base import StudentTeacher

PKG = Path(sb.__file__).parent
READ = re.compile(r"""(?:hp|hparams)(?:\[|\.get\()["'](\w+)["']|["'](\w+)["'] (?:not )?in self\.hp""")


def reads(path: Path) -> set[str]:
    return {a or b for a, b in READ.findall(path.read_text())}


@pytest.mark.parametrize("over, words", [
    (dict(hparams={"lamda_u": 1}), "mixmatch has no hyper-parameter 'lamda_u' (did you mean "
                                   "'lambda_u'?)"),
    (dict(ema_decay=2.0), "ema_decay must be a finite number in [0, 1), got 2.0"),
    (dict(steps=10.5), "steps must be a positive integer, got 10.5"),
    (dict(batch_l=0), "batch_l must be a positive integer, got 0"),
    (dict(log_every=0), "log_every must be a positive integer"),
    (dict(eval_size=-5), "eval_size must be a non-negative integer, got -5"),
    (dict(eval_every=True), "eval_every must be a positive integer, got True"),
    (dict(lr=float("nan")), "lr must be a finite number above 0"),
    (dict(momentum="0.9"), "momentum must be a finite number in [0, 1)"),
    (dict(skip_nonfinite=1), "skip_nonfinite must be True or False"),
    (dict(stepz=3), "unknown config field 'stepz' (did you mean 'steps'?)"),
    (dict(weights_path="w.pth"), "leave it out"),
    (dict(hparams={"lambda_u": float("inf")}), "lambda_u must be finite"),
    (dict(hparams=[1]), "hparams must be a dict"),
])
def test_bad_values_are_refused_when_the_config_is_made(over, words):
    with pytest.raises(ConfigError) as e:
        sb.make_config("mixmatch", "fashion-mnist", 250, 0, "smoke", **over)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_good_values_and_every_profile_pass():
    for name, cls in METHODS.items():
        for profile in ("smoke", "full", "paper"):
            for dataset in ("fashion-mnist", "fashion-scenes"):
                if cls.supports(sb.data.dataset_info(dataset).task):
                    sb.make_config(name, dataset, 250 if dataset == "fashion-mnist" else 20, 0,
                                   profile)
    cfg = sb.make_config("mixmatch", "fashion-mnist", 250, 0, "smoke", lr=1, hparams={"T": 0.4})
    assert cfg.lr == 1 and cfg.hparams["T"] == 0.4


def test_every_hyper_parameter_the_code_reads_is_declared():
    engine = set().union(*(reads(p) for p in (PKG / "engine").glob("*.py")))
    assert engine <= set(ENGINE_HPARAMS), engine - set(ENGINE_HPARAMS)
    for name, cls in METHODS.items():
        used = set().union(*(reads(Path(inspect.getfile(k))) for k in cls.__mro__
                             if k.__module__.startswith("semibook.methods.")
                             and k.__name__ != "SemiMethod"))
        if issubclass(cls, StudentTeacher):
            used.add("ema")
        assert used <= declared_hparams(cls), (name, used - declared_hparams(cls))


def test_a_garbage_weights_file_is_one_line_without_torchs_advice(tmp_path):
    from semibook.models.segmentation import create_segmentation_model
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x80\x02garbage, not a state dict" * 10)
    with pytest.raises(ConfigError) as e:
        create_segmentation_model("unet-r10t", 11, 3, weights_path=str(bad))
    text = str(e.value)
    assert text.startswith(f"{bad}: cannot load it as the tu-resnet10t encoder's weights")
    assert "weights_only" not in text and "\n" not in text


def test_fit_checks_a_config_changed_after_make_config_before_any_write(tmp_path):
    import dataclasses
    from semibook.engine.fit import fit
    cfg = sb.make_config("mixmatch", "fashion-mnist", 250, 0, "smoke")
    for bad, words in ((dict(steps=0), "steps must be a positive integer"),
                       (dict(hparams={"lamda_u": 1}), "did you mean 'lambda_u'"),
                       (dict(arch=3), "arch must be a string")):
        with pytest.raises(ConfigError, match=re.escape(words)):
            fit(dataclasses.replace(cfg, **bad), tmp_path / "run", progress=False, device="cpu")
        assert not (tmp_path / "run").exists()
