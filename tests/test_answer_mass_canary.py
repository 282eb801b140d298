"""`model.min_answer_mass`: the start-up canary refuses a model that is not answering yes or no where
p_yes is read, and names what to check; without the option the same model starts and its p_yes
look normal (which is why the option exists). The model (`build_answering_qwen2_vl`) puts nearly
all of its probability on "Yes"/"yes"/"No"/"no" written without a leading space."""
from __future__ import annotations

import numpy as np
import pytest

from actors.checklist_scorer import ChecklistScorer
from actors.demo_model import QWEN2_VL_CHAT_TEMPLATE
from actors.systemic_failure import SystemicScoringError
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, ModelConfig
from tests.engine_models import build_answering_qwen2_vl
from tests.test_scorer_stage import _decoded_images

CHECKLISTS = checklists_to_json(resolve_checklists(["default"]))
GENERATION_PROMPT = "<|im_start|>assistant\n"
# What the refusal must name for the user to act on
CAUSES = ("chat template", "model.chat_template_kwargs", "<think>", "model.answer_prefix", "model.yes_words",
          "model.no_words", "model.answer_leading_space")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_answering_qwen2_vl(tmp_path_factory.mktemp("answering"))


def _scorer(model_dir, **model: object) -> ChecklistScorer:
    config = ModelConfig(model=str(model_dir), device="cpu", dtype="float32", **model)
    return ChecklistScorer(config.model_dump(), DecodeConfig().model_dump(), CHECKLISTS)


def _masses(out: dict) -> np.ndarray:
    return np.stack([np.frombuffer(raw, dtype=np.float32) for raw in out["answer_mass"]])


def _p_yes(out: dict) -> np.ndarray:
    return np.stack([np.frombuffer(raw, dtype=np.float32) for raw in out["p_yes"]])


def test_a_model_answering_where_p_yes_is_read_starts_and_reports_its_mass(model_dir, tmp_path):
    out = _scorer(model_dir, min_answer_mass=0.9)(_decoded_images(tmp_path, 2))
    assert list(out["status"]) == ["ok", "ok"] and np.all(_masses(out) > 0.99)


def _wrong_template(tmp_path) -> str:
    """The checkpoint's template with another model's generation prompt ('Assistant:'): the answer
    then follows text, so it is read as ' Yes' and ' No', which this model does not write."""
    assert QWEN2_VL_CHAT_TEMPLATE.count(GENERATION_PROMPT) == 1
    path = tmp_path / "other.jinja"
    path.write_text(QWEN2_VL_CHAT_TEMPLATE.replace(GENERATION_PROMPT, "<|im_start|>assistant\nAssistant:"))
    return str(path)


@pytest.mark.parametrize("setting", ["leading space", "wrong template"])
def test_the_canary_refuses_a_model_not_answering_where_p_yes_is_read(model_dir, tmp_path, setting):
    wrong = {"answer_leading_space": True} if setting == "leading space" else {"chat_template": _wrong_template(tmp_path)}
    # without the option the model starts, and its p_yes look like answers: nothing says otherwise but the mass
    out = _scorer(model_dir, **wrong)(_decoded_images(tmp_path, 2))
    p_yes = _p_yes(out)
    assert list(out["status"]) == ["ok", "ok"] and np.all((p_yes > 0.05) & (p_yes < 0.95))
    assert np.all(_masses(out) < 1e-3)
    with pytest.raises(SystemicScoringError, match=r"puts \S+ of its probability on the yes and no words") as info:
        _scorer(model_dir, min_answer_mass=0.5, **wrong)
    message = str(info.value)
    assert "synthetic image" in message and "model.min_answer_mass is 0.5" in message
    assert all(cause in message for cause in CAUSES), message
