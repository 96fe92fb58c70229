"""Symbolic derivations of the softmax flows and their fixed points (docs/theory.md items 1-5).

Every function returns a sympy object built by differentiating the stated objective of a
softmax policy pi = softmax(z) over K outcomes; nothing here is evaluated numerically (see
`collapse_lab.theory.logratio` for the numeric laws). Expressions are written in the
probabilities p_0..p_{K-1} (with sum p = 1 substituted) and the rewards r_0..r_{K-1}.

- item 1: `pg_flow` (vanilla PG), `pg_fixed_points`, `pg_k2_invariant` (u + sinh u = Delta t),
  `pg_asymptote_expr` ((K-1)/(K eta));
- item 2: `npg_flow` (natural PG / replicator);
- item 3 and docs/methods.md §2: `ips_flow`, `ips_alpha_flow`, `ips_fixed_point`, `ips_alpha_fixed_point`,
  `ips_k2_invariant`;
- item 4: `partial_tie_exponent_expr`;
- item 5: `entropy_change_expr`.
"""

from __future__ import annotations

import functools

import sympy as sp

ALPHA = sp.Symbol("alpha", positive=True)
ETA = sp.Symbol("eta", positive=True)
T = sp.Symbol("t", positive=True)
U = sp.Symbol("u", real=True)


def symbols(K: int):
    """(z, p, r): logits, probabilities (positive) and rewards (real) for K outcomes."""
    z = sp.symbols(f"z0:{K}", real=True)
    p = sp.symbols(f"p0:{K}", positive=True)
    r = sp.symbols(f"r0:{K}", real=True)
    return z, p, r


def _softmax(z):
    s = sum(sp.exp(zi) for zi in z)
    return [sp.exp(zi) / s for zi in z]


def _to_probabilities(expr, z, p):
    """Substitute z_j = log p_j and sum p = 1 in an expression of softmax(z)."""
    e = expr.subs({zi: sp.log(pi) for zi, pi in zip(z, p)})
    return sp.simplify(e.subs(sum(p), 1))


@functools.lru_cache(maxsize=16)
def pg_flow(K: int = 3) -> sp.Matrix:
    """Vanilla PG flow dz_i/dt = dJ/dz_i = p_i (r_i - J), J = sum_k p_k r_k (item 1, Mei et al.)."""
    z, p, r = symbols(K)
    J = sum(pi * ri for pi, ri in zip(_softmax(z), r))
    return sp.Matrix([_to_probabilities(sp.diff(J, zi), z, p) for zi in z])


@functools.lru_cache(maxsize=16)
def npg_flow(K: int = 3) -> sp.Matrix:
    """Natural PG flow (item 2): the solutions dz of F dz = grad J, F = diag(p) - p p^T.

    Returns the general solution, r + tau * 1 (tau free: the softmax ignores shared shifts), so
    log(p_i/p_j)(t) = log(p_i/p_j)(0) + eta t (r_i - r_j) exactly.
    """
    _, p, r = symbols(K)
    F = sp.diag(*p) - sp.Matrix(p) * sp.Matrix(p).T
    grad = pg_flow(K)
    dz = sp.symbols(f"dz0:{K}", real=True)
    # F is singular (F 1 = p (1 - sum p) = 0), so eliminate p_{K-1} = 1 - sum of the others.
    last = {p[-1]: 1 - sum(p[:-1])}
    eqs = [sp.expand((F * sp.Matrix(dz) - grad)[i].subs(last)) for i in range(K)]
    (sol,) = sp.linsolve(eqs, dz)
    return sp.Matrix(sol)


@functools.lru_cache(maxsize=16)
def ips_flow(K: int = 3) -> sp.Matrix:
    """IPS flow (item 3): gradient of sum_k r_k log p_k, dz_i/dt = r_i - p_i sum_k r_k."""
    z, p, r = symbols(K)
    L = sum(ri * sp.log(pi) for ri, pi in zip(r, _softmax(z)))
    return sp.Matrix([sp.expand(_to_probabilities(sp.diff(L, zi), z, p)) for zi in z])


@functools.lru_cache(maxsize=16)
def ips_alpha_flow(K: int = 3) -> sp.Matrix:
    """IPS with exponent alpha (docs/methods.md §2): gradient of sum_o p_o r_o / sg(p_o)^alpha.

    Differentiating with the stop-gradient q_o = sg(p_o) held fixed and then setting q = p gives
    dz_i/dt = r_i p_i^(1-alpha) - p_i sum_o r_o p_o^(1-alpha).
    """
    z, p, r = symbols(K)
    q = sp.symbols(f"q0:{K}", positive=True)
    J = sum(pi * ri * qi ** (-ALPHA) for pi, ri, qi in zip(_softmax(z), r, q))
    grads = [_to_probabilities(sp.diff(J, zi), z, p).subs(dict(zip(q, p))) for zi in z]
    return sp.Matrix([sp.powsimp(sp.expand(sp.powsimp(g, force=True)), force=True) for g in grads])


def ips_fixed_point(K: int = 3) -> list:
    """Solve r_i - p_i sum r = 0 component-wise: the unique fixed point p* = r / sum r (item 3)."""
    _, p, r = symbols(K)
    R = sum(r)
    return [sp.solve(sp.Eq(ri - pi * R, 0), pi)[0] for pi, ri in zip(p, r)]


def ips_alpha_fixed_point() -> sp.Expr:
    """Fixed point of the IPS-alpha flow: p^(1-alpha) r = p S gives p = (r/S)^(1/alpha), so
    p* is proportional to r^(1/alpha) (docs/methods.md §2). Returns p as a function of r and S."""
    p, r, S = sp.symbols("p r S", positive=True)
    (sol,) = sp.solve(sp.Eq(p ** (1 - ALPHA) * r, p * S), p)
    return sol


def pg_fixed_points(K: int = 3) -> list:
    """Fixed points of the PG / replicator dynamics p_i (r_i - J) = 0 on the simplex for generic
    (distinct) rewards: the K vertices. Only the vertex of the best outcome is stable (item 1)."""
    p = sp.symbols(f"p0:{K}", real=True)
    r = sp.symbols(f"r0:{K}", real=True)
    J = sum(pi * ri for pi, ri in zip(p, r))
    eqs = [pi * (ri - J) for pi, ri in zip(p, r)] + [sum(p) - 1]
    return sp.solve(eqs, p, dict=True)


def pg_k2_invariant() -> sp.Expr:
    """K = 2 vanilla PG (item 1): with u = z_1 - z_2, Delta = r_1 - r_2, du/dt = 2 p_1 p_2 Delta
    = Delta / (1 + cosh u); integrating dt = du (1 + cosh u)/Delta gives H(u) = u + sinh u with
    H(u(t)) = Delta t + H(u(0))."""
    delta = sp.Symbol("Delta", nonzero=True)
    p1 = 1 / (1 + sp.exp(-U))
    rate = sp.simplify(2 * p1 * (1 - p1) * delta)  # du/dt
    return sp.simplify(sp.integrate(sp.simplify((delta / rate).rewrite(sp.cosh)), U))


def ips_k2_invariant() -> sp.Expr:
    """K = 2 IPS flow (item 3): du/dt = (r_1 - r_2) - (p_1 - p_2)(r_1 + r_2) = Delta - R tanh(u/2).

    Returns the antiderivative H(u) of 1/(du/dt), so H(u(t)) = t + H(u(0)); sympy gives
    (u - ((r_1 + r_2)/r_2) log(r_1 - r_2 e^u)) / (2 r_1) up to a constant, for r_1, r_2 > 0.
    """
    r1, r2, x = sp.symbols("r1 r2 x", positive=True)
    # x = e^u: dt = (x + 1) dx / (x ((Delta - R) x + Delta + R)).
    integrand = (x + 1) / (x * (-2 * r2 * x + 2 * r1))
    H = sp.integrate(sp.apart(integrand, x), x)
    return sp.simplify(H.subs(x, sp.exp(U)))


def pg_asymptote_expr() -> sp.Expr:
    """Asymptote of the discrete exact-gradient iteration with a unique optimum (item 1).

    Near convergence g_j = p_j (r* - r_j) for each j != * obeys g_j <- g_j (1 - eta (g_j + delta))
    with delta = r* - J = sum_j g_j. The ansatz g_j = c / t gives 1 = eta (c + delta t) and,
    by symmetry, delta t = (K - 1) c: t (r* - J) -> (K - 1)/(K eta).
    """
    c, C, K = sp.symbols("c C K", positive=True)
    sol = sp.solve([sp.Eq(1, ETA * (c + C)), sp.Eq(C, (K - 1) * c)], [c, C], dict=True)[0]
    return sp.simplify(sol[C])


def partial_tie_exponent_expr() -> sp.Expr:
    """Item 4: two correct outcomes tied at the top reward, n_W worse ones, vanilla PG flow.

    With p_1 -> 1 the worse outcomes obey g_w' = -g_w (g_w + delta), delta = sum_w g_w, so
    g_w = c/t with 1 = c + n_W c; then d log(p_j/p_1)/dt = (p_j - p_1) delta -> -delta, giving
    p_j/p_1 ~ t^(-n_W/(n_W + 1)). Returns that exponent as a function of n_W.
    """
    c, n_w = sp.symbols("c n_W", positive=True)
    (c_sol,) = sp.solve(sp.Eq(1, c + n_w * c), c)
    return sp.simplify(-n_w * c_sol)


def entropy_change_expr(K: int = 3) -> sp.Expr:
    """Item 5: d/dh H(softmax(z + h v)) at h = 0, as an expression of p and v (v: logit change).

    Equals -Cov_p(log p, v) = -(sum p v log p - (sum p log p)(sum p v)).
    """
    z, p, _ = symbols(K)
    v = sp.symbols(f"v0:{K}", real=True)
    h = sp.Symbol("h", real=True)
    q = _softmax([zi + h * vi for zi, vi in zip(z, v)])
    H = -sum(qi * sp.log(qi) for qi in q)
    dH = _to_probabilities(sp.diff(H, h).subs(h, 0), z, p)
    return sp.expand(sp.expand_log(dH, force=True))
