"""CounterFact data files; the records' parsing (both layouts) is `editbench.tasks.common.counterfact_records`."""
from __future__ import annotations

from editbench.data import DataFile
from editbench.tasks.common.counterfact_records import parse_request

_KS_URL = "https://raw.githubusercontent.com/Jometeorie/KnowledgeSpread/main/data/counterfact/"
_LICENSE = "none stated by the source; CounterFact ships with the ROME/MEMIT code (MIT)"
COUNTERFACT_TRAIN = DataFile(
    path="counterfact/counterfact-train.json",
    sha256="f7d443ffb0c5da6cbe816cdac45281ccb3f204b8a840f00d07a4aafa949bcd76",
    url=_KS_URL + "counterfact-train.json",
    license=_LICENSE,
)
COUNTERFACT_EDIT = DataFile(
    path="counterfact/counterfact-edit.json",
    sha256="bfe31a7081932739406e282bb625d74222549c3386c15b1df3dfbc3978c69eec",
    url=_KS_URL + "counterfact-edit.json",
    license=_LICENSE,
)

__all__ = ["COUNTERFACT_EDIT", "COUNTERFACT_TRAIN", "parse_request"]
