"""Backend factory: local and endpoint builders, unknown names, endpoint parameters and errors."""

import pytest

from chains.backends import BUILDERS, build_backend
from chains.backends.endpoint import EndpointChatModel, EndpointLLM
from chains.backends.local import LocalChatModel, LocalLLM
from chains.errors import EndpointUnavailable, ModelNotReady, UnknownBackend
from chains.settings import Settings, load_settings
from tests.conftest import free_port


def test_unknown_backend_lists_the_valid_ones():
    settings = Settings.model_construct(backend="gpu")
    with pytest.raises(UnknownBackend, match="local, endpoint"):
        build_backend(settings)
    assert set(BUILDERS) == {"local", "endpoint"}


def test_local_backend_is_lazy_and_not_ready_before_loading(tmp_path):
    backend = build_backend(load_settings(model=str(tmp_path / "some-model")))
    assert isinstance(backend.llm, LocalLLM) and isinstance(backend.chat_model, LocalChatModel)
    assert backend.model_name == "some-model" and not backend.is_ready()
    with pytest.raises(ModelNotReady, match="still loading"):
        backend.llm.invoke("hi")


def test_local_backend_takes_hub_ids():
    backend = build_backend(load_settings(model="HuggingFaceTB/SmolLM2-360M-Instruct"))
    assert backend.engine.source == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_endpoint_backend_builds_hf_clients_with_served_model_name():
    settings = load_settings(backend="endpoint", endpoint_url="http://127.0.0.1:9/", endpoint_model="m1")
    backend = build_backend(settings)
    assert isinstance(backend.llm, EndpointLLM) and isinstance(backend.chat_model, EndpointChatModel)
    assert backend.chat_model._default_params["model"] == "m1"  # not "dummy": pinned servers check it


def test_endpoint_greedy_and_top_p_follow_tgi_rules():
    llm = EndpointLLM(endpoint_url="http://127.0.0.1:9", temperature=0.0, top_p=1.0, typical_p=None)
    params = llm._default_params
    assert params["do_sample"] is False and params["temperature"] is None and params["top_p"] is None
    sampled = EndpointLLM(endpoint_url="http://127.0.0.1:9", temperature=0.7, top_p=0.9)._default_params
    assert sampled["do_sample"] is True and sampled["top_p"] == 0.9


def test_unreachable_endpoint_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    backend = build_backend(load_settings(backend="endpoint", endpoint_url=url, endpoint_timeout=5))
    with pytest.raises(EndpointUnavailable, match=url.replace(".", r"\.")):
        backend.llm.invoke("hi")
    with pytest.raises(EndpointUnavailable, match="unreachable"):
        list(backend.chat_model.stream("hi"))


def test_the_onnx_runtime_without_cuda_names_the_package(tmp_path):
    import onnxruntime

    from chains.backends.onnx.runtime import OnnxCausalLM

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(RuntimeError, match="pip install onnxruntime-gpu"):
        OnnxCausalLM(tmp_path, str(tmp_path), precision="int4", provider="cuda")


def test_runtime_names():
    from chains.backends import runtime_name

    assert runtime_name(load_settings(runtime="torch")) == "torch"
    assert runtime_name(load_settings()) == "auto"  # decided when the model loads
    assert runtime_name(load_settings(runtime="onnx")) == "onnx-int4"
    assert runtime_name(load_settings(runtime="onnx", onnx_precision="fp32")) == "onnx-fp32"


def test_a_hub_id_is_exported_from_its_snapshot_and_a_new_revision_is_a_new_export(tmp_path, monkeypatch):
    import huggingface_hub

    from chains.backends.onnx import export

    snapshots = {"rev": tmp_path / "snapshots" / "aaa"}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **_: str(snapshots["rev"]))
    for folder in (tmp_path / "snapshots" / "aaa", tmp_path / "snapshots" / "bbb"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    first = export.exported_folder(tmp_path, "org/model", "int4", "cpu")
    assert first.name.startswith("org--model-int4-cpu-") and first.parent == tmp_path / "onnx"
    snapshots["rev"] = tmp_path / "snapshots" / "bbb"
    assert export.exported_folder(tmp_path, "org/model", "int4", "cpu") != first
