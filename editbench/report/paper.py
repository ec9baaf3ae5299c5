"""The MALMEN paper's published numbers (Tan, Zhang, Fu, ICLR 2024), typed from its text.

Every value names where it is printed (`source`: table and row, or the section of the text) and
the editbench setting that would reproduce it (`task`, `method`, `m`); `task` is None where
editbench has no such task. ES/GS/LS are in percent as printed (std in brackets in the paper),
times in hours. Figs. 4–9 print no numbers; what their text says is kept in `FIGURE_CLAIMS`.
"""
from __future__ import annotations

from typing import NamedTuple


class PaperValue(NamedTuple):
    """One number of the paper and the editbench setting it belongs to."""
    table: str  # the table (or section) printing it: "Table 1", "Table 2", "Sec. 5.1", "Table 3"
    source: str  # e.g. "Table 1, row 'MALMEN', zsRE m = 512 GPT-2 (124M) columns"
    task: str | None  # the editbench task of that dataset and model (None: no such task)
    model: str
    variant: str  # the paper's name of the row
    method: str  # the editbench method of that row
    m: int
    metric: str  # es, gs, ls (percent), hours (total time), es_sequence, drawdown (fractions)
    value: float | None  # None: the paper prints "–" (see `note`)
    std: float | None = None
    note: str = ""


def _esgsls(table: str, source: str, task: str | None, model: str, variant: str, method: str, m: int,
            numbers: tuple[tuple[float, float], ...] | None, note: str = "") -> list[PaperValue]:
    if numbers is None:
        return [PaperValue(table, source, task, model, variant, method, m, metric, None, None, note)
                for metric in ("es", "gs", "ls")]
    return [PaperValue(table, source, task, model, variant, method, m, metric, value, std, note)
            for metric, (value, std) in zip(("es", "gs", "ls"), numbers)]


_T1_FEVER = "Table 1 (FEVER, m = 512, BERT-base 110M), row '{}'"
_T1_ZSRE = "Table 1 (zsRE, m = 512, GPT-2 124M), row '{}'"
_T2 = "Table 2 (zsRE, m = 8192, GPT-J 6B), row '{}'"
_T3 = "Table 3 (App. A.7, zsRE, BART-base), row m = {}, column '{}'"
_ABLATIONS = (("Sum param. shifts", "malmen-sum-shifts"), ("No regularization", "malmen-no-reg"),
              ("Edit first FC in FFN", "malmen-first-fc"), ("Cache all tokens", "malmen-cache-all"),
              ("MALMEN", "malmen"))
_FEVER_BERT = {
    "Sum param. shifts": ((79.1, 1.6), (75.1, 1.9), (72.9, 3.1)),
    "No regularization": None,
    "Edit first FC in FFN": ((50.3, 2.4), (50.3, 1.7), (51.0, 3.2)),
    "Cache all tokens": ((97.0, 0.7), (90.0, 1.4), (90.3, 1.4)),
    "MALMEN": ((93.0, 1.6), (85.8, 2.1), (89.5, 2.1)),
}
_ZSRE_GPT2 = {
    "Sum param. shifts": ((52.2, 1.4), (50.7, 1.4), (17.0, 0.5)),
    "No regularization": ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)),
    "Edit first FC in FFN": ((97.7, 1.3), (89.1, 2.6), (15.8, 1.3)),
    "Cache all tokens": ((99.2, 0.3), (94.0, 0.8), (16.6, 1.0)),
    "MALMEN": ((99.7, 0.2), (96.1, 0.6), (16.5, 1.0)),
}
_SINGULAR = "training fails: singular matrix, Sec. 5.2"

VALUES: list[PaperValue] = []
for _variant, _method in _ABLATIONS:
    VALUES += _esgsls("Table 1", _T1_FEVER.format(_variant), "fever-bert", "BERT-base (110M)", _variant, _method, 512,
                      _FEVER_BERT[_variant], _SINGULAR if _FEVER_BERT[_variant] is None else "")
for _variant, _method in _ABLATIONS:
    VALUES += _esgsls("Table 1", _T1_ZSRE.format(_variant), "zsre-gpt2", "GPT-2 (124M)", _variant, _method, 512,
                      _ZSRE_GPT2[_variant])
VALUES += _esgsls("Table 2", _T2.format("Cache all tokens"), "zsre-gptj", "GPT-J (6B)", "Cache all tokens", "malmen-cache-all",
                  8192, ((94.0, 0.3), (85.5, 0.7), (25.9, 0.2)))
VALUES.append(PaperValue("Table 2", _T2.format("Cache all tokens") + ", column 'Time (h)'", "zsre-gptj", "GPT-J (6B)",
                         "Cache all tokens", "malmen-cache-all", 8192, "hours", 7.2))
VALUES += _esgsls("Table 2", _T2.format("MALMEN"), "zsre-gptj", "GPT-J (6B)", "MALMEN", "malmen", 8192,
                  ((99.7, 0.0), (92.8, 0.3), (25.1, 0.3)))
VALUES.append(PaperValue("Table 2", _T2.format("MALMEN") + ", column 'Time (h)'", "zsre-gptj", "GPT-J (6B)", "MALMEN", "malmen",
                         8192, "hours", 4.4))
_A100 = "Sec. 5.1 (text under Fig. 7): total time including training on one A100, {} editing 16,384 facts"
VALUES.append(PaperValue("Sec. 5.1", _A100.format("MALMEN"), "zsre-gptj", "GPT-J (6B)", "MALMEN", "malmen", 16384, "hours", 12.25))
VALUES.append(PaperValue("Sec. 5.1", _A100.format("MEMIT"), "zsre-gptj", "GPT-J (6B)", "MEMIT", "memit", 16384, "hours", 33.75))
_NO_BART = "no BART-base zsRE task in editbench"
for _m, _ours, _original in ((5, (0.99, 0.007), (0.97, 0.005)), (25, (0.98, 0.015), (0.89, 0.011)),
                             (75, (0.89, 0.026), (0.78, 0.011)), (125, (0.91, 0.040), (0.67, 0.012))):
    for _metric, _column, _index in (("es_sequence", "Edit Success", 0), ("drawdown", "Accuracy Drawdown", 1)):
        VALUES.append(PaperValue("Table 3", _T3.format(_m, f"{_column}, Ours"), None, "BART-base", "MEND (re-implemented)",
                                 "mend", _m, _metric, _ours[_index], None, _NO_BART))
        VALUES.append(PaperValue("Table 3", _T3.format(_m, f"{_column}, Original"), None, "BART-base",
                                 "MEND (Mitchell et al. 2022)", "mend-mitchell", _m, _metric, _original[_index], None,
                                 _NO_BART))


# The title of each table (or section) of the paper that `VALUES` cite, in the paper's order.
TABLES: dict[str, str] = {
    "Table 1": "Table 1: ablations on FEVER / BERT-base (110M) and zsRE / GPT-2 (124M), m = 512",
    "Table 2": "Table 2: GPT-J (6B) on zsRE, m = 8192, with the total time",
    "Sec. 5.1": "Sec. 5.1 (text): total time including training to edit 16,384 facts on GPT-J, one A100",
    "Table 3": "Table 3 (App. A.7): MEND re-implemented vs Mitchell et al. (2022), zsRE / BART-base, sequence-wise",
}


class FigureClaim(NamedTuple):
    """What the paper's text says about one figure (the figures print no numbers)."""
    figure: str
    task: str | None  # the editbench task of the figure's setting
    m_range: tuple[int, int] | None  # the figure's range of m
    text: str


FIGURE_CLAIMS: list[FigureClaim] = [
    FigureClaim("Fig. 4 (BERT-base, FEVER)", "fever-bert", (2**4, 2**12),
                "MALMEN scales best; FT is fragile (a slightly different lr fails on LS or on ES/GS) and has a larger "
                "ES–GS gap than MEND and MALMEN (Sec. 5.1)."),
    FigureClaim("Fig. 5 (GPT-2, zsRE)", "zsre-gpt2", (2**6, 2**12),
                "MALMEN edits over an order of magnitude more facts than MEND with similar performance (Sec. 5.1)."),
    FigureClaim("Fig. 6 (T5-XL 2.8B, zsRE)", "zsre-t5xl", (2**8, 2**14),
                "All methods improve with model scale; MALMEN keeps scaling (Sec. 5.1)."),
    FigureClaim("Fig. 7 (GPT-J 6B, zsRE)", "zsre-gptj", (2**5, 2**14),
                "MALMEN edits over two orders of magnitude more facts than MEND with similar performance and beats "
                "MEMIT; its LS is below the best by less than 0.02 (Sec. 5.1)."),
    FigureClaim("Fig. 8 (GPT-2, cancellation)", "zsre-gpt2", None,
                "The mean residual grows with m for both MALMEN and 'Sum param. shifts'; MALMEN's is about three "
                "orders of magnitude smaller (Sec. 5.2)."),
    FigureClaim("Fig. 9 (GPT-2, memory)", "zsre-gpt2", (2**5, 2**13),
                "MALMEN's memory grows slowly with m; MEND-style training (the hyper-network concatenated to the LM) "
                "grows fast and exceeds the GPU (Sec. 5.2)."),
]

# The embedded tasks run small models on CPU; the paper reports none of them.
EMBEDDED_NOTE = ("The paper has no numbers for SmolLM2-135M (`zsre-smollm2`, `counterfact-smollm2`) or MiniLM "
                 "(`fever-minilm`): the embedded tasks are our CPU-sized settings, compared with each other in their "
                 "leaderboards, not with the paper. The nearest published settings are zsRE/GPT-2 (124M) and "
                 "FEVER/BERT-base (110M) at m = 512 (Table 1).")
