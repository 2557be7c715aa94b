"""The one measure of how far an output is from onnxruntime's (verifier, bench, benchmarks)."""
import numpy as np

from archc.util.difference import relative_diff


def test_the_difference_is_of_the_references_range():
    want = np.array([[2.0, -4.0], [1.0, 0.5]], np.float32)
    assert abs(relative_diff(want + np.float32(0.004), want) - 0.001) < 1e-6  # 0.004 of the largest magnitude, 4
    assert relative_diff(want, want) == 0.0


def test_what_cannot_be_compared_numerically():
    assert relative_diff(np.zeros(3), np.zeros((1, 3))) == float("inf")  # another shape
    assert relative_diff(np.array([1, 2]), np.array([1, 3])) == float("inf")  # integers must be equal
    assert relative_diff(np.array([1, 2]), np.array([1, 2])) == 0.0
    assert relative_diff(np.array([1e-9]), np.zeros(1)) > 1  # an all-zero reference allows no difference
    assert relative_diff(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) == 0.0  # NaN where the reference has it
    assert relative_diff(np.array([np.nan, 1.0]), np.array([0.0, 1.0])) == float("inf")
    assert relative_diff(np.zeros(0), np.zeros(0)) == 0.0
