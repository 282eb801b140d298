"""The question kinds of our checklist format: defaults that leave every existing checklist as it
was, a question's own prompt_template, and `rescore` refusing stored p_yes read another way."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.rescore import match_questions
from schemas.checklist import Checklist, default_checklist
from schemas.user_error import UserError


def _checklist(**question: object) -> Checklist:
    return Checklist.model_validate({
        "name": "kinds", "media_type": "image", "prompt_template": "[[question]] Answer yes or no.",
        "questions": [{"id": "cat", "text": "Is there a cat?", "dimension": "content"},
                      {"id": "aligned", "text": "Does this figure show \"[[prompt]]\"?", "dimension": None,
                       **question}],
        "aggregation": {"rule": "mean"}})


def test_defaults_are_yes_no_renormalised_with_the_checklist_template():
    for media in ("image", "video"):
        for q in default_checklist(media).questions:
            assert (q.answer, q.readout, q.prompt_template) == ("yes_no", "renormalised", None)
    assert _checklist().render("a fox") == ["Is there a cat? Answer yes or no.",
                                             "Does this figure show \"a fox\"? Answer yes or no."]


def test_a_question_carries_its_own_prompt_template():
    checklist = _checklist(prompt_template="[[question]] Please answer yes or no.", readout="absolute")
    assert checklist.render("a fox") == ["Is there a cat? Answer yes or no.",
                                         "Does this figure show \"a fox\"? Please answer yes or no."]
    with_prompt = _checklist(text="Is it aligned?", prompt_template="Prompt: [[prompt]]. [[question]]")
    assert with_prompt.uses_prompt  # [[prompt]] in a question's template alone still needs the row's prompt
    with pytest.raises(ValueError, match="needs a prompt"):
        with_prompt.render(None)


@pytest.mark.parametrize("bad, match", [({"prompt_template": "Is it?"}, "must contain \\[\\[question\\]\\]"),
                                        ({"readout": "raw"}, "readout"), ({"answer": "maybe"}, "answer")])
def test_bad_kinds_are_refused_at_load(bad, match):
    with pytest.raises(ValidationError, match=match):
        _checklist(**bad)


@pytest.mark.parametrize("change", [{"readout": "absolute"}, {"prompt_template": "[[question]] Please answer."}])
def test_rescore_refuses_p_yes_that_was_read_another_way(change):
    source = _checklist()
    assert list(match_questions(source, source)) == [0, 1]
    with pytest.raises(UserError, match="'aligned' of 'kinds' is asked or read otherwise"):
        match_questions(source, _checklist(**change))
