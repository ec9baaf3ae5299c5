"""The embedded zsRE data file; the records' parsing (MEND and KILT layouts) is
`editbench.tasks.common.zsre_records`."""
from __future__ import annotations

from editbench.data import DataFile, first_json_records
from editbench.tasks.common.zsre_records import TARGETS, ZsreFact, parse_fact, to_request

ZSRE_800 = DataFile(
    path="zsre/zsre_mend_train_800.json",
    sha256="b4ee6022a6af72816a44dfa0f7f9e800921d71ef4254f51d6d9d6c60c86a2406",
    url="https://raw.githubusercontent.com/Jometeorie/KnowledgeSpread/main/data/zsre/zsre_mend_train-1k.json",
    license="none stated by the source; zsRE derives from WikiReading/Wikidata",
    transform=first_json_records(800),
)

__all__ = ["TARGETS", "ZSRE_800", "ZsreFact", "parse_fact", "to_request"]
