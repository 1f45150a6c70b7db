"""Hypothesis strategies over the valid parameters of D(p, η, n)."""

from hypothesis import strategies as st

p = st.floats(0.51, 0.99)
eta = st.floats(0.05, 3.0)
n = st.integers(1, 200)
small_n = st.integers(1, 30)
at_fraction = st.floats(0.01, 0.97)  # ε_AT / η
sam_eps = st.floats(0.005, 2.0)
w1 = st.floats(-5.0, 20.0)
