"""Per-seed test accuracies (%) from the seed paper's appendix tables, as test fixtures.

Source: "When Does Margin Clamping Affect Training Variance?", Appendix A (Tables 16-17)
and Appendix C (Tables 19-22). Written out here so the statistics tests do not depend on
the packaged data they are used to check.
"""

CLAMP_DETACH = [78.49, 78.27, 78.43, 76.96, 78.81, 78.59, 80.12]
CLAMP_DIRECT = [78.07, 77.91, 79.42, 76.23, 79.24, 78.79, 79.45]
SUBTRACT_DETACH = [78.82, 79.29, 78.87, 79.02, 77.87, 78.37, 78.84]
SUBTRACT_DIRECT = [78.27, 78.31, 78.68, 78.23, 78.37, 78.32, 77.92]
LOW_CLAMP_DETACH = [78.97, 78.49, 79.04, 78.15, 78.46, 78.49, 77.99]
LOW_CLAMP_DIRECT = [80.16, 77.36, 78.33, 77.74, 76.88, 77.55, 78.35]

CLAMP_POOLED = CLAMP_DETACH + CLAMP_DIRECT
SUBTRACT_POOLED = SUBTRACT_DETACH + SUBTRACT_DIRECT
LOW_CLAMP_POOLED = LOW_CLAMP_DETACH + LOW_CLAMP_DIRECT


def factorial_frame(value: str = "test_acc"):
    """The CIFAR-10 2x2 factorial as a tidy DataFrame (margin, stability, seed, `value`)."""
    import pandas as pd

    rows = []
    for (m, s), vals in {
        ("clamp", "detach"): CLAMP_DETACH,
        ("clamp", "direct"): CLAMP_DIRECT,
        ("subtract", "detach"): SUBTRACT_DETACH,
        ("subtract", "direct"): SUBTRACT_DIRECT,
    }.items():
        rows += [{"margin": m, "stability": s, "seed": i + 1, value: v} for i, v in enumerate(vals)]
    return pd.DataFrame(rows)
