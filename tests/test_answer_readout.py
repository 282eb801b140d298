"""The answer is read where the checkpoint writes it: template options (Qwen3.5's thinking switch)
and answer prefixes (GLM-4.1V Thinking), the same on the fast and reference paths, against stock
forwards of the prompt rendered the way the checkpoint's authors document it.

Before `model.chat_template_kwargs` and `model.answer_prefix`, the Qwen3.5 fixture (whose template
has the real one's switch) was scored at `<think>\\n`, where the model starts to reason, and GLM-4.1V
Thinking at `<|assistant|>\\n`, where it writes `<think>`."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.adapters import MediaInput, load_adapter
from actors.answer_readout import resolve_readout, template_options
from actors.demo_model import build_demo_model
from jobs.job_config_loading import build_job_config
from pipeline.model_family import resolve_readout_config
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig
from tests.family_stock import stock_p_yes
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

QUESTIONS = ["Is the lighting natural?", "Is there a cat?", "Yes or no?"]
# 224 = 7 x 32 = 8 x 28: neither family resizes it
IMAGE = np.random.default_rng(3).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
TOL = 1e-4
THINK_OFF, THINK_ON = {"enable_thinking": False}, {"enable_thinking": True}
GLM_PREFIX = "<think></think><answer>"


@pytest.fixture(scope="module")
def qwen3_5(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("qwen3_5"), family="qwen3_5")


@pytest.fixture(scope="module")
def glm4v(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("glm4v"), family="glm4v")


def _adapter(model_dir, decode: DecodeConfig = DecodeConfig(), **model):
    return load_adapter(ModelConfig(model=str(model_dir), device="cpu", dtype="float32", **model), decode)


def _stock(model_dir, **kwargs) -> np.ndarray:
    return np.array([stock_p_yes(model_dir, IMAGE, "image", q, **kwargs) for q in QUESTIONS])


def _both_paths(adapter) -> tuple[np.ndarray, np.ndarray]:
    item = MediaInput(IMAGE, "image")
    return adapter.score([item], [QUESTIONS])[0], adapter.score_reference([item], [QUESTIONS])[0]


QWEN_DECODE = DecodeConfig(resize_factor=32)


def test_qwen3_5_defaults_to_its_non_thinking_prompt(qwen3_5):
    adapter = _adapter(qwen3_5, QWEN_DECODE)
    assert adapter.template_kwargs == THINK_OFF
    seq = adapter.prepare(MediaInput(IMAGE, "image"), QUESTIONS[:1]).sequences[0]
    closed = adapter.tokenizer.encode("<|im_start|>assistant\n<think>\n\n</think>\n\n", add_special_tokens=False)
    assert seq[-len(closed):].tolist() == closed  # the answer follows the empty, closed think block
    want = _stock(qwen3_5, template_kwargs=THINK_OFF)
    for got in _both_paths(adapter):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    thinking = _stock(qwen3_5, template_kwargs={})  # negative control: the prompt left to think
    assert np.abs(thinking - want).max() > 10 * TOL


def test_enable_thinking_true_from_the_command_line_gives_the_thinking_prompt(qwen3_5, tmp_path):
    cfg = build_job_config(None, {"manifest": "m.parquet", "out": str(tmp_path), "model.model": str(qwen3_5)},
                           ["model.chat_template_kwargs.enable_thinking=true", "model.device=cpu", "model.dtype=float32"])
    assert cfg.model.chat_template_kwargs == THINK_ON
    adapter = load_adapter(resolve_readout_config(cfg.model, StorageConfig()), QWEN_DECODE)
    seq = adapter.prepare(MediaInput(IMAGE, "image"), QUESTIONS[:1]).sequences[0]
    opened = adapter.tokenizer.encode("<|im_start|>assistant\n<think>\n", add_special_tokens=False)
    assert seq[-len(opened):].tolist() == opened
    want = _stock(qwen3_5, template_kwargs=THINK_ON)
    for got in _both_paths(adapter):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    assert np.abs(want - _stock(qwen3_5, template_kwargs=THINK_OFF)).max() > 10 * TOL


def test_glm4v_thinking_is_read_after_its_answer_opening(glm4v):
    adapter = _adapter(glm4v)
    assert adapter.answer_prefix == GLM_PREFIX and adapter.template_kwargs is None
    tok = adapter.tokenizer
    seq = adapter.prepare(MediaInput(IMAGE, "image"), QUESTIONS[:1]).sequences[0]
    tail = [tok.convert_tokens_to_ids(t) for t in ("<|assistant|>",)] + tok.encode("\n", add_special_tokens=False) \
        + [tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("</think>")] \
        + tok.encode("<answer>", add_special_tokens=False, split_special_tokens=True)
    assert seq[-len(tail):].tolist() == tail  # the markers are the tokenizer's own tokens, then text
    want = _stock(glm4v, answer_prefix=GLM_PREFIX)
    for got in _both_paths(adapter):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)

    # '' turns the prefix off: then the answer is read at `<|assistant|>\n`, as the stock prompt has it
    plain = _adapter(glm4v, answer_prefix="")
    bare = _stock(glm4v, answer_prefix="")
    np.testing.assert_allclose(plain.score([MediaInput(IMAGE, "image")], [QUESTIONS])[0], bare, atol=TOL, rtol=0)
    assert np.abs(bare - want).max() > 10 * TOL  # negative control


def test_the_driver_resolves_what_the_actors_render(qwen3_5, glm4v, tmp_path):
    storage = StorageConfig()
    q = resolve_readout_config(ModelConfig(model=str(qwen3_5)), storage)
    assert (q.chat_template_kwargs, q.answer_prefix) == (THINK_OFF, None)
    g = resolve_readout_config(ModelConfig(model=str(glm4v)), storage)
    assert (g.chat_template_kwargs, g.answer_prefix) == (None, GLM_PREFIX)
    # a thinking template named by model.chat_template switches the same way
    template = tmp_path / "thinking.jinja"
    template.write_text((qwen3_5 / "chat_template.jinja").read_text())
    t = resolve_readout_config(ModelConfig(model=str(glm4v), chat_template=str(template)), storage)
    assert (t.chat_template_kwargs, t.answer_prefix) == (THINK_OFF, None)
    # set values stay; resolving twice changes nothing
    own = ModelConfig(model=str(qwen3_5), chat_template_kwargs={"x": 1}, answer_prefix="")
    once = resolve_readout_config(own, storage)
    assert (once.chat_template_kwargs, once.answer_prefix) == ({"x": 1, "enable_thinking": False}, "")
    assert resolve_readout_config(once, storage) == once


def test_an_older_job_json_resumes_only_where_nothing_is_rendered_differently(qwen3_5, glm4v, tmp_path):
    from pipeline.output_dir import result_differences
    from schemas.job_config import JobConfig

    def job(model: ModelConfig) -> dict:
        return json.loads(JobConfig(manifest="/m.parquet", out="/o", model=model).model_dump_json())

    def older(model_dir) -> dict:  # written before the two options existed, for the same model
        record = job(ModelConfig(model=str(model_dir)))
        del record["model"]["chat_template_kwargs"], record["model"]["answer_prefix"]
        return record

    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (plain / name).write_bytes((qwen3_5 / name).read_bytes())
    (plain / "chat_template.jinja").write_text("{{ messages }}")  # a template without a switch
    resolved = resolve_readout_config(ModelConfig(model=str(plain)), StorageConfig())
    assert result_differences(older(plain), job(resolved), {}, {}) == []
    for model_dir, change in ((qwen3_5, "model.chat_template_kwargs.enable_thinking"), (glm4v, "model.answer_prefix")):
        new = job(resolve_readout_config(ModelConfig(model=str(model_dir)), StorageConfig()))
        assert [d.split(":")[0] for d in result_differences(older(model_dir), new, {}, {})] == [change]


def test_template_options_only_where_the_template_reads_them():
    switch = "{% if enable_thinking is defined and enable_thinking is false %}x{% endif %}"
    assert template_options("{{ messages }}", None) is None
    assert template_options("{{ messages }}", {}) == {}
    assert template_options(switch, None) == THINK_OFF
    assert template_options(switch, THINK_ON) == THINK_ON
    # no <think> tokens, or a switch: no GLM prefix
    glm = ModelConfig(model="m")
    assert resolve_readout(glm, "glm4v", "{{ messages }}", {"<|assistant|>"}).answer_prefix is None
    assert resolve_readout(glm, "glm4v", switch, {"<think>", "</think>"}).answer_prefix is None
    assert resolve_readout(glm, "glm4v", "{{ messages }}", {"<think>", "</think>"}).answer_prefix == GLM_PREFIX
    assert resolve_readout(glm, "qwen2_vl", "{{ messages }}", {"<think>", "</think>"}).answer_prefix is None


def test_options_that_name_arguments_of_the_rendering_are_refused(glm4v):
    with pytest.raises(ValueError, match=r"\['tokenize'\]"):
        _adapter(glm4v, chat_template_kwargs={"tokenize": True})


def test_a_null_mapping_in_the_config_file_takes_set_keys(tmp_path):
    (tmp_path / "job.yaml").write_text("model:\n  model: m\n  chat_template_kwargs: null\n")
    cfg = build_job_config(str(tmp_path / "job.yaml"), {"manifest": "m.parquet", "out": "o"},
                           ["model.chat_template_kwargs.enable_thinking=false"])
    assert cfg.model.chat_template_kwargs == THINK_OFF


def test_the_generic_path_renders_with_the_same_options(tmp_path, qwen3_5):
    from tests.engine_models import build_llava

    model = build_llava(tmp_path / "llava")
    adapter = _adapter(model, chat_template=str(qwen3_5 / "chat_template.jinja"))
    assert adapter.template_kwargs == THINK_OFF
    assert adapter._render("image", "Is it red?").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    on = _adapter(model, chat_template=str(qwen3_5 / "chat_template.jinja"), chat_template_kwargs=THINK_ON)
    assert on._render("image", "Is it red?").endswith("<|im_start|>assistant\n<think>\n")
    prefixed = _adapter(model, answer_prefix="Answer:")
    assert prefixed._render("image", "Is it red?").endswith("<|im_start|>assistant\nAnswer:")


@pytest.mark.slow
def test_a_job_records_the_options_it_rendered_with(tmp_path, capsys, qwen3_5, ray_session):  # noqa: F811
    from actors.synthetic_media import write_image
    from jobs import cli as vrscore_cli

    uri = str(write_image(tmp_path / "a.png", (96, 64), seed=1))
    pq.write_table(pa.table({"id": ["a"], "uri": [uri], "prompt": ["a cat"]}), tmp_path / "m.parquet")
    for name, extra, want in (("default", [], THINK_OFF), ("thinking", ["--set", "model.chat_template_kwargs.enable_thinking=true"], THINK_ON)):
        out = tmp_path / name
        assert vrscore_cli.main(["score", "--manifest", str(tmp_path / "m.parquet"), "--checklist", "default",
                                 "--model", str(qwen3_5), "--out", str(out), "--quiet", "--set", "model.device=cpu",
                                 *extra]) == 0, capsys.readouterr().err[-3000:]
        model = json.loads((out / "job.json").read_text())["model"]
        assert (model["chat_template_kwargs"], model["answer_prefix"]) == (want, None)
        assert pq.read_table(out / "scores").column("status").to_pylist() == ["ok"]
