import pytest
import torch

from spikeforge.model import PRESETS, build_model, make_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_both_architectures(name):
    config = make_config(name)
    assert config.validate() is config
    for arch in ("spikingformer", "spikformer"):
        model = build_model(name, arch, depth=1, dim=32, heads=4, img_size=config.downsampling * 2, T=2)
        shape = (2, 2) if config.family == "dvs" else (2,)
        x = torch.rand(*shape, config.in_channels, model.config.img_size, model.config.img_size)
        assert model.eval()(x).shape == (2, config.num_classes)


def test_paper_parameter_count_of_cifar10_4_384():
    # the paper reports 9.32 M parameters for Spikingformer-4-384 on CIFAR-10
    params = sum(p.numel() for p in build_model("cifar10-4-384").parameters())
    assert abs(params - 9.32e6) < 0.01e6


@pytest.mark.parametrize("overrides,message", [
    (dict(dim=64, heads=5), r"dim \(64\) must be divisible by heads \(5\)"),
    (dict(img_size=30), "img_size must be divisible by 4"),
    (dict(dim=36, heads=4), "dim must be divisible by 8"),
    (dict(depth=0), "depth must be a positive integer"),
    (dict(tau=0.5), "tau must be at least 1.0"),
    (dict(T="two"), "override T must be int"),
    (dict(width=3), "unknown override 'width'"),
])
def test_invalid_combinations_raise_clear_value_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model("cifar10-4-384", **overrides)


@pytest.mark.parametrize("overrides,message", [
    (dict(mlp_ratio="inf"), r"^override mlp_ratio must be a finite number, not 'inf'$"),
    (dict(mlp_ratio="nan"), r"^override mlp_ratio must be a finite number, not 'nan'$"),
    (dict(mlp_ratio="1e400"), r"^override mlp_ratio must be a finite number, not '1e400'$"),
    (dict(tau="inf"), r"^override tau must be a finite number, not 'inf'$"),
    (dict(tau="-inf"), r"^override tau must be a finite number, not '-inf'$"),
    (dict(mlp_ratio="0"), r"^mlp_ratio must lie in \(0, 64\] and give at least one hidden channel, not 0.0$"),
    (dict(mlp_ratio="-2"), r"^mlp_ratio must lie in \(0, 64\] .*, not -2.0$"),
    (dict(mlp_ratio="1e-9"), r"^mlp_ratio must lie in \(0, 64\] and give at least one hidden channel"),
    (dict(mlp_ratio="1e300"), r"^mlp_ratio must lie in \(0, 64\] .*, not 1e\+300$"),
    (dict(tau="0"), r"^tau must be at least 1.0, not 0.0$"),
    (dict(tau="-3"), r"^tau must be at least 1.0, not -3.0$"),
    (dict(tau="1e7"), r"^tau must be at most 1e\+06, not 10000000.0$"),
    (dict(depth="-1"), r"^depth must be a positive integer, not -1$"),
    (dict(T="0"), r"^T must be a positive integer, not 0$"),
    (dict(num_classes="0"), r"^num_classes must be a positive integer, not 0$"),
    (dict(depth="100000000000000000000"), r"^depth must be at most 64, not 100000000000000000000$"),
    (dict(dim="1e3"), r"^override dim must be int, not '1e3'$"),
    (dict(depth=float("inf")), r"^override depth must be int, not inf$"),
    (dict(depth=float("nan")), r"^override depth must be int, not nan$"),
    (dict(depth=True), r"^depth must be a positive integer, not True$"),
])
def test_non_finite_and_out_of_range_overrides_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("digits-tiny", **overrides)


def test_large_tau_stays_legal_for_the_config():
    assert make_config("digits-tiny", tau="1000").tau == 1000.0


@pytest.mark.parametrize("field,value,message", [
    ("mlp_ratio", float("inf"), "mlp_ratio must be a finite number, not inf"),
    ("tau", float("nan"), "tau must be a finite number, not nan"),
    ("tau", "2", "tau must be a finite number, not '2'"),
    ("dim", 64.0, "dim must be a positive integer, not 64.0"),
    ("family", None, "family must be one of cifar, imagenet, dvs, not None"),
    ("dataset", 3, "dataset must be a name, not 3"),
])
def test_validate_refuses_malformed_fields(field, value, message):
    import dataclasses

    config = dataclasses.replace(make_config("digits-tiny"), **{field: value})
    with pytest.raises(ValueError, match=f"^{message}$"):
        config.validate()


def test_imagenet_family_needs_16_fold_divisible_images():
    with pytest.raises(ValueError, match="img_size must be divisible by 16"):
        build_model("imagenet-8-384", img_size=40)


def test_unknown_preset_and_arch():
    with pytest.raises(ValueError, match="unknown model 'cifar11'"):
        build_model("cifar11")
    with pytest.raises(ValueError, match="arch must be one of"):
        build_model("digits-tiny", arch="resnet")


def test_overrides_from_text_are_parsed():
    config = make_config("digits-tiny", depth="2", mlp_ratio="2.5", tau="1.5")
    assert (config.depth, config.mlp_ratio, config.tau) == (2, 2.5, 1.5)


def test_wrong_input_shape_is_a_value_error():
    model = build_model("digits-tiny")
    with pytest.raises(ValueError, match=r"expected images \[B, 1, 8, 8\], got \[2, 3, 8, 8\]"):
        model(torch.rand(2, 3, 8, 8))
    dvs = build_model("dvs128-2-256", img_size=32, dim=32, heads=4, T=2)
    with pytest.raises(ValueError, match="expected event frames"):
        dvs(torch.rand(2, 2, 32, 32))


def test_attention_orders_follow_the_official_families():
    assert build_model("cifar10-4-384", depth=1).block[0].attn.order == "qk_first"
    assert build_model("imagenet-8-384", depth=1).block[0].attn.order == "kv_first"
    assert build_model("dvs128-2-256", depth=1).block[0].attn.order == "qk_first"
