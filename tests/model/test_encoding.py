import numpy as np
import pytest
import torch

from spikeforge.model import make_config
from spikeforge.model.encoding import check_pixels, decode_pixels, encode_input, input_encoding

DIGITS = input_encoding(make_config("digits-tiny"))
IMAGES = input_encoding(make_config("cifar10-4-384").as_dict())
EVENTS = input_encoding(make_config("dvs128-2-256"))


def test_encodings_of_the_families():
    assert DIGITS == {"shape": [1, 8, 8], "scale_exp": -4, "max": 16, "events": False}
    assert IMAGES == {"shape": [3, 32, 32], "scale_exp": -8, "max": 255, "events": False}
    assert EVENTS == {"shape": [16, 2, 128, 128], "scale_exp": 0, "max": 1, "events": True}


def test_round_trip_is_exact_on_the_grid():
    for encoding in (DIGITS, IMAGES, EVENTS):
        pixels = torch.arange(encoding["max"] + 1).view(1, -1)
        x = decode_pixels(pixels, encoding)
        assert x.dtype == torch.float32 and torch.equal(encode_input(x, encoding), pixels)
    assert torch.equal(decode_pixels(torch.tensor([0, 8, 16]), DIGITS), torch.tensor([0.0, 0.5, 1.0]))


def test_values_between_grid_points_round_to_the_nearest_pixel():
    x = torch.tensor([0.02, 0.04, 1.02, 0.999])
    assert encode_input(x, DIGITS).tolist() == [0, 1, 16, 16]
    assert encode_input(torch.tensor([255.4 / 256]), IMAGES).tolist() == [255]


@pytest.mark.parametrize("encoding,values,message", [
    (DIGITS, [0.5, -0.01, 0.0], r"^x.npy: value -0.01 at index \[0, 1\] \(flat 1\) is negative; float inputs "
                                r"must lie in \[0, 1\] \(pixel·2\*\*-4 for pixels 0..16\)$"),
    (DIGITS, [np.nan, np.inf, 0.0], r"^x.npy: value nan at index \[0, 0\] \(flat 0\) is not finite; .* "
                                    r"\(2 values are wrong\)$"),
    (DIGITS, [0.0, 0.0, -np.inf], r"value -inf at index \[0, 2\] \(flat 2\) is not finite"),
    (DIGITS, [1.04, 0.0, 0.0], r"value 1.04 at index \[0, 0\] \(flat 0\) is too large; float inputs must lie "
                               r"in \[0, 1\]"),
    (IMAGES, [0.0, 255.6 / 256, 0.0], r"at index \[0, 1\] \(flat 1\) is too large; float inputs must lie in "
                                      r"\[0, 0.99609375\] \(pixel·2\*\*-8 for pixels 0..255\)"),
    (EVENTS, [1.0, 0.0, 0.999], r"value 0.999 at index \[0, 2\] \(flat 2\) is not an event \(0 or 1\); event "
                                r"inputs must be exactly 0 or 1$"),
    (EVENTS, [2.0, 0.0, 0.0], r"value 2.0 at index \[0, 0\] \(flat 0\) is not an event"),
    (EVENTS, [-1.0, 0.0, 0.0], r"value -1.0 at index \[0, 0\] \(flat 0\) is not an event"),
])
def test_encode_input_refuses_instead_of_clamping(encoding, values, message):
    with pytest.raises(ValueError, match=message):
        encode_input(np.array([values], np.float64), encoding, source="x.npy")


def test_encode_input_names_the_source_and_a_multi_index():
    x = torch.zeros(2, 1, 8, 8)
    x[1, 0, 7, 6] = 2.0
    with pytest.raises(ValueError, match=r"^random:2: value 2.0 at index \[1, 0, 7, 6\] \(flat 126\)"):
        encode_input(x, DIGITS, source="random:2")
    with pytest.raises(ValueError, match=r"^input: value 2.0"):
        encode_input(x, DIGITS)


@pytest.mark.parametrize("encoding,values,message", [
    (DIGITS, np.array([[3, 17]], np.uint8), r"^p.npy: value 17 at index \[0, 1\] \(flat 1\) is out of range; "
                                            r"pixels must be integers in 0..16$"),
    (DIGITS, np.array([[-2, 3]], np.int8), r"value -2 at index \[0, 0\] \(flat 0\) is out of range"),
    (IMAGES, np.array([[256, 300, 0]], np.int64), r"value 256 at index \[0, 0\] .* 0..255 \(2 values are wrong\)"),
    (DIGITS, np.array([[1.0, 2.5]], np.float32), r"value 2.5 at index \[0, 1\] \(flat 1\) is not an integer"),
    (DIGITS, np.array([[np.inf]]), r"value inf at index \[0, 0\] \(flat 0\) is not an integer"),
    (EVENTS, np.array([[1, 2]], np.int64), r"value 2 at index \[0, 1\] \(flat 1\) is out of range; events must "
                                           r"be 0 or 1$"),
])
def test_check_pixels_refuses(encoding, values, message):
    with pytest.raises(ValueError, match=message):
        check_pixels(values, encoding, source="p.npy")


def test_check_pixels_accepts_integer_bool_and_integral_float_arrays():
    for values in (np.array([0, 16], np.uint8), np.array([0, 16], ">i4"), np.array([0.0, 16.0])):
        pixels = check_pixels(values, DIGITS)
        assert pixels.dtype == torch.int64 and pixels.tolist() == [0, 16]
    assert check_pixels(np.array([True, False]), EVENTS).tolist() == [1, 0]
    assert check_pixels(torch.tensor([3, 4]), DIGITS).tolist() == [3, 4]


def test_malformed_encodings_and_dtypes():
    with pytest.raises(ValueError, match="input encoding must be a dict with fields shape, scale_exp, max, events"):
        encode_input(torch.zeros(1), {"scale_exp": -4})
    with pytest.raises(ValueError, match="input encoding field 'max' must be an integer, not '16'"):
        encode_input(torch.zeros(1), {**DIGITS, "max": "16"})
    with pytest.raises(ValueError, match="^x: inputs must be real numbers, not dtype complex64"):
        encode_input(np.zeros(2, np.complex64), DIGITS, "x")
    with pytest.raises(ValueError, match="^p: pixels must be integers, not dtype <U1"):
        check_pixels(np.array(["a"]), DIGITS, "p")
