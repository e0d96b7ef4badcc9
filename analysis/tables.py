"""The divide-and-co-train comparison table (DESIGN section 6): error, params and GFLOPs at S = 1, 2, 4, ... and the
gain over S = 1, as Markdown, CSV and LaTeX.

S = 1 is a "dct" design with one member when the sweep has one, else the "single" design at the same budget.
GFLOPs are 1e9 multiply-accumulates (MACs) per sample of the convolution and linear layers, summed over members: the
count the DCT paper reports (no BatchNorm). That is the design-time `macs` column (= flops_torch / 2). fvcore's count
(`macs_fvcore`, kept in the store) adds BatchNorm and comes out 2.7-3% higher, so the table does not use it; the
`gflops_source` column names the source ("macs").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.est import MAX_BUDGET_DEVIATION_PCT
from analysis.store import over_seeds

KEYS = ["dataset", "family", "fit", "budget"]
CAPTION = (
    "Divide and co-train: test error (%) at the final epoch, mean ± sample std over seeds; params = total parameters "
    "of all members (M = 10^6); GFLOPs = 10^9 multiply-accumulates (MACs) per sample of the convolution and linear "
    "layers, summed over members, as the DCT paper counts them (no BatchNorm; fvcore's count, macs_fvcore in the "
    "store, adds BatchNorm and is about 3% higher); source: {sources}. "
    "Gain = error(S = 1) − error(S), in percentage points (positive = better than S = 1)."
)
SOURCE_TEXT = {"macs": "design-time conv + linear MACs (macs = flops_torch / 2)"}


def dct_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Return the numeric comparison table: one row per (dataset, family, fit, budget, S) with S from the dct rows.

    Columns: dataset, family, fit, budget (parameters), S, n_seeds, error_pct, error_std_pct (NaN for one seed),
    params_m (M parameters), gflops (1e9 conv + linear MACs per sample), gflops_source ("macs"), gain_pp
    (error at S = 1 minus error at S, percentage points; NaN without an S = 1 row), budget_deviation_pct ((params -
    budget) / budget, %). Only status "ok" trials count.
    Empty when the trials have no "dct" rows.
    """
    cols = KEYS + ["S", "n_seeds", "error_pct", "error_std_pct", "params_m", "gflops", "gflops_source", "gain_pp",
                   "budget_deviation_pct"]  # fmt: skip
    if trials.empty or "design_class" not in trials or not (trials["design_class"] == "dct").any():
        return pd.DataFrame(columns=cols)
    ok = trials[(trials["status"] == "ok") & trials["final_acc"].notna()] if "status" in trials else trials
    dct = ok[ok["design_class"] == "dct"].assign(S=lambda d: d["members"].astype(int))
    have_s1 = set(map(tuple, dct.loc[dct["S"] == 1, KEYS].drop_duplicates().values))
    single = ok[ok["design_class"] == "single"].assign(S=1)
    # A single network stands in for S = 1 only where the sweep has no dct S = 1 at that budget.
    single = single.loc[np.array([tuple(r) not in have_s1 for r in single[KEYS].values], dtype=bool)]
    # ... and only at budgets the dct sweep covers.
    dct_keys = set(map(tuple, dct[KEYS].drop_duplicates().values))
    single = single.loc[np.array([tuple(r) in dct_keys for r in single[KEYS].values], dtype=bool)]
    rows = pd.concat([dct, single], ignore_index=True)
    groups = KEYS + ["S"]
    # The papers' GFLOPs are conv + linear multiply-accumulates (no BatchNorm): design-time macs = flops_torch / 2.
    rows = rows.assign(
        error=100.0 * (1.0 - rows["final_acc"].astype(float)),
        params_m=rows["params_total"].astype(float) / 1e6,
        gflops=rows["macs"].astype(float) / 1e9,
        budget_deviation_pct=rows["budget_deviation_pct"].astype(float) if "budget_deviation_pct" in rows else np.nan,
    )
    tab = over_seeds(rows, groups, "error", "error_pct", "error_std_pct", params_m="params_m", gflops="gflops",
                     budget_deviation_pct="budget_deviation_pct")  # fmt: skip
    tab["gflops_source"] = "macs"
    base = tab[tab["S"] == 1].set_index(KEYS)["error_pct"]
    tab["gain_pp"] = [base.get(tuple(k), np.nan) - e for k, e in zip(tab[KEYS].values, tab["error_pct"], strict=True)]
    return tab[cols].reset_index(drop=True)


def _fmt_err(m: float, s: float, pm: str) -> str:
    return f"{m:.2f}" if np.isnan(s) else f"{m:.2f} {pm} {s:.2f}"


def _far(tab: pd.DataFrame, max_budget_deviation_pct: float) -> pd.Series:
    """Return per row whether its design is further than `max_budget_deviation_pct` % from its budget."""
    dev = tab["budget_deviation_pct"] if "budget_deviation_pct" in tab else pd.Series(np.nan, index=tab.index)
    return dev.astype(float).abs() > max_budget_deviation_pct


def _display(tab: pd.DataFrame, pm: str, esc=lambda x: x, max_pct: float = MAX_BUDGET_DEVIATION_PCT) -> pd.DataFrame:
    """Return the formatted view shared by Markdown and LaTeX (pm: the ± symbol in that format); params of a design
    further than `max_pct` % from its budget carry a dagger (see `caption`)."""
    far = _far(tab, max_pct)
    return pd.DataFrame(
        {
            "dataset": tab["dataset"].map(esc),
            "family": tab["family"].map(esc),
            "budget (M params)": (tab["budget"] / 1e6).map(lambda b: f"{b:.3g}"),
            "S": tab["S"],
            "seeds": tab["n_seeds"],
            "error (%)": [_fmt_err(m, s, pm) for m, s in zip(tab["error_pct"], tab["error_std_pct"], strict=True)],
            "params (M)": [f"{p:.3f}" + (" †" if f else "") for p, f in zip(tab["params_m"], far, strict=True)],
            "GFLOPs": tab["gflops"].map(lambda g: f"{g:.4g}"),
            "GFLOPs source": tab["gflops_source"].map(lambda s: esc(s)),
            "gain over S=1 (pp)": tab["gain_pp"].map(lambda g: "" if np.isnan(g) else f"{g:+.2f}"),
        }
    )


def caption(tab: pd.DataFrame, max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT) -> str:
    """Return the table caption, naming the GFLOPs source(s) actually used, with a footnote when a design is further
    than `max_budget_deviation_pct` % from its budget."""
    sources = sorted(set(tab["gflops_source"])) if not tab.empty else ["macs"]
    text = CAPTION.format(sources=", ".join(SOURCE_TEXT[s] for s in sources))
    if not tab.empty and _far(tab, max_budget_deviation_pct).any():
        text += (f" † Parameter count further than {max_budget_deviation_pct:g}% from the budget: not a comparison "
                 "at equal budgets.")  # fmt: skip
    return text


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def display_frame(tab: pd.DataFrame, max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT) -> pd.DataFrame:
    """Return the table as the strings it is shown with (error as mean ± std in %, parameters in M, GFLOPs)."""
    return _display(tab, "±", max_pct=max_budget_deviation_pct)


def to_markdown(tab: pd.DataFrame, max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT) -> str:
    """Return the table as Markdown with its caption as a paragraph below."""
    if tab.empty:
        return "_No dct designs with status ok: no divide-and-co-train table._"
    view = _display(tab, "±", max_pct=max_budget_deviation_pct).to_markdown(index=False, disable_numparse=True)
    return view + "\n\n" + caption(tab, max_budget_deviation_pct) + "\n"


def to_latex(
    tab: pd.DataFrame, label: str = "tab:dct", max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT
) -> str:
    """Return the table as a LaTeX table environment (booktabs rules) with caption and label."""
    view = _display(tab, r"$\pm$", _latex_escape, max_budget_deviation_pct)
    view.columns = [_latex_escape(c) for c in view.columns]
    cap = _latex_escape(caption(tab, max_budget_deviation_pct))
    cap = cap.replace("±", r"$\pm$").replace("−", "-").replace("10^", r"10\^{}").replace("†", r"$\dagger$")
    view["params (M)"] = view["params (M)"].str.replace("†", r"$\dagger$", regex=False)
    return view.to_latex(index=False, escape=False, caption=cap, label=label, column_format="ll" + "r" * 8)


def write_dct_table(
    trials: pd.DataFrame,
    out_dir: Path,
    stem: str = "dct_table",
    max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
) -> dict[str, Path]:
    """Write the comparison table as <stem>.md, .csv (numeric columns) and .tex; return {"md"|"csv"|"tex": path}.

    Returns {} (writes nothing) when the trials have no ok dct rows.
    """
    tab = dct_table(trials)
    if tab.empty:
        return {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "tex": out_dir / f"{stem}.tex"}
    paths["md"].write_text(to_markdown(tab, max_budget_deviation_pct), encoding="utf-8")
    tab.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(to_latex(tab, max_budget_deviation_pct=max_budget_deviation_pct), encoding="utf-8")
    return paths
