"""The model type is an enum between modules and LM Studio's plain text wherever it is written."""

from __future__ import annotations

import json

from lmstudio_tray.core.lmstudio.client import parse_v0_models, parse_v1_models
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState, ModelInfo, ModelType, StatusReport
from lmstudio_tray.tray.menu import build_menu, find


def test_listings_give_the_enum_and_v0s_plural_reads_as_embedding() -> None:
    v1 = parse_v1_models({"models": [{"key": "a", "type": "llm"}, {"key": "e", "type": "embedding"},
                                     {"key": "n"}]})
    assert [m.type for m in v1] == [ModelType.LLM, ModelType.EMBEDDING, ModelType.LLM]
    v0 = parse_v0_models({"data": [{"id": "e", "type": "embeddings"}, {"id": "v", "type": "vlm"}]})
    assert [m.type for m in v0] == [ModelType.EMBEDDING, ModelType.VLM]
    assert all(isinstance(m.type, ModelType) for m in (*v1, *v0))


def test_a_type_lm_studio_adds_later_is_kept_as_it_says_it() -> None:
    (model,) = parse_v1_models({"models": [{"key": "voice", "type": "tts"}]})
    assert isinstance(model.type, ModelType) and model.type not in tuple(ModelType)
    assert model.type == "tts" and f"[{model.type}]" == "[tts]" and f"{model.type:<5}|" == "tts  |"
    assert json.dumps(model.to_json()["type"]) == '"tts"'  # `status --json` and the endpoint: as LM Studio said


def test_written_forms_are_the_plain_value() -> None:
    model = ModelInfo("k", type="embedding")  # given as text, held as the enum
    assert model.type is ModelType.EMBEDDING
    assert str(model.type) == "embedding" and f"{model.type}" == "embedding"
    assert json.dumps(model.to_json()) == json.dumps({**model.to_json(), "type": "embedding"})


def test_the_tray_groups_unknown_types_under_other_models() -> None:
    snap = InstanceSnapshot("local", "http://127.0.0.1:1234", InstanceState.IDLE,
                            models=(ModelInfo("chat", type="llm"), ModelInfo("voice", type="tts")))
    load = find(build_menu(StatusReport((snap,), active="local")), "Load model")
    assert [g.label for g in load.children] == ["Language models", "Other models"]
    assert [m.label for m in find(load.children, "Other models").children] == ["voice"]
