"""The vLLM engine's arithmetic, without vLLM: the answer tokens' log-probabilities it gets back are
read by our `read_kinds` exactly as the whole-vocabulary logits are, and what vLLM returns is checked
(prompt token for token, every answer token present) before anything is read."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from actors.adapters.packing import AnswerGroups, read_kinds
from actors.adapters.vllm_engine import answer_logprobs, core_list, dense_logprobs

VOCAB = 300
KINDS = [AnswerGroups(((5, 9), (17, 40))),  # yes/no, renormalised
         AnswerGroups(((5, 9), (17, 40)), None, True),  # yes/no, absolute
         AnswerGroups(((60,), (61, 62), (290,)), (0.0, 0.5, 1.0))]  # a rating of three levels
IDS = sorted({i for kind in KINDS for group in kind.groups for i in group})


def vllm_output(prompt: list[int], logprobs: dict[int, float]) -> SimpleNamespace:
    """The fields of vllm.RequestOutput the engine reads."""
    step = {i: SimpleNamespace(logprob=v) for i, v in logprobs.items()}
    return SimpleNamespace(prompt_token_ids=prompt, outputs=[SimpleNamespace(logprobs=[step])])


def test_answer_logprobs_read_as_the_whole_vocabulary():
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(0)) * 4
    logprobs = torch.log_softmax(logits, dim=-1)
    rows = [{i: float(logprobs[r, i]) for i in IDS} for r in range(3)]
    want = read_kinds(logits, KINDS)
    got = read_kinds(dense_logprobs(rows, IDS), KINDS)
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[2][2], want[2][2], rtol=1e-5)
    assert got[1][1] < 0.5  # the answer mass is a share of the whole vocabulary, not 1
    # negative control: the same logprobs without the rest of the vocabulary's mass read otherwise
    no_rest = dense_logprobs(rows, IDS)[:, :-1]
    assert abs(read_kinds(no_rest, KINDS)[1][1] - want[1][1]) > 1e-2


def test_a_prompt_other_than_ours_or_a_missing_answer_token_is_an_error():
    ours = np.array([1, 2, 3, 4])
    full = {i: -1.0 for i in IDS}
    assert answer_logprobs(vllm_output([1, 2, 3, 4], full), ours, IDS) == full
    with pytest.raises(ValueError, match="first difference at token 2"):
        answer_logprobs(vllm_output([1, 2, 7, 4], full), ours, IDS)
    with pytest.raises(ValueError, match="5 tokens, ours 4; first difference at token 4"):
        answer_logprobs(vllm_output([1, 2, 3, 4, 5], full), ours, IDS)
    with pytest.raises(ValueError, match=r"no logprob for answer tokens \[290\]"):
        answer_logprobs(vllm_output([1, 2, 3, 4], {i: -1.0 for i in IDS[:-1]}), ours, IDS)
    # an alias is accepted only where ours holds the id it stands for
    assert answer_logprobs(vllm_output([1, 9, 9, 4], full), np.array([1, 3, 3, 4]), IDS, {9: 3}) == full
    with pytest.raises(ValueError, match="first difference at token 0"):
        answer_logprobs(vllm_output([9, 2, 3, 4], full), np.array([1, 2, 3, 4]), IDS, {9: 2})


def test_core_list():
    assert core_list([0, 1]) == "0-1" and core_list([2, 3, 4]) == "2-4" and core_list([0, 2, 5]) == "0,2,5"
