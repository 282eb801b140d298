"""Outputs written before the answer mass existed: a resumed one goes on without the column, so
that every file of one output has one schema, and the assembler writes rows to that schema."""
from __future__ import annotations

import fsspec
import numpy as np
import pyarrow.parquet as pq

from pipeline.score_run import as_written
from pipeline.assemble import ScoreAssembler
from tests.scores_fixtures import CHECKLISTS, random_rows, scores_table


def _output(out, table) -> None:
    """One committed data file, as `vrscore score` leaves it."""
    (out / "scores").mkdir(parents=True)
    (out / "_checkpoint").mkdir()
    pq.write_table(table, out / "scores" / "w0_000000_000000-0.parquet")
    pq.write_table(table.select(["id"]), out / "_checkpoint" / "w0_000000_000000.parquet")


def test_a_resumed_output_keeps_the_schema_it_was_begun_with(tmp_path):
    fs = fsspec.filesystem("file")
    table = scores_table(random_rows(np.random.default_rng(0), 2, (2, 2)))
    _output(tmp_path / "new", table)
    _output(tmp_path / "old", table.drop_columns(["answer_mass"]))
    assert as_written(fs, str(tmp_path / "new"), table.schema) == table.schema
    old = as_written(fs, str(tmp_path / "old"), table.schema)
    assert old.names == [n for n in table.schema.names if n != "answer_mass"]
    assert old.metadata == table.schema.metadata
    assert as_written(fs, str(tmp_path / "fresh"), table.schema) == table.schema  # nothing written yet

    # the scorer's batch carries the mass; the old schema's rows go without it
    mass = np.full(len(CHECKLISTS["image"].questions), 0.25, np.float32).tobytes()
    batch = {"id": np.array(["a"], object), "uri": np.array(["/a.png"], object), "media_type": np.array(["image"], object),
             "prompt": np.array(["p"], object), "group": np.array([None], object), "status": np.array(["ok"], object),
             "error": np.array([None], object), "p_yes": np.array([mass], object), "answer_mass": np.array([mass], object)}
    assert ScoreAssembler(CHECKLISTS, old)(batch).schema == old
    assert ScoreAssembler(CHECKLISTS, table.schema)(batch)["answer_mass"].to_pylist() == [[0.25] * len(CHECKLISTS["image"].questions)]
