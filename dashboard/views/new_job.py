"""New job: pick or upload a dataset, pick a model and an estimator, set the key knobs, submit.

The API validates everything (the real `TrainConfig`); a refusal is shown under the field it names
and at the top of the form, and the form keeps what the user typed.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from client import ApiError
from dashboard import forms, state

st.title("New job")
url, key = state.connection()
datasets = state.call(state.fetch_datasets, url, key)
models = state.call(state.fetch_models, url, key)
try:  # the trainer's registries through the API; the built-in names if it cannot list them
    components = state.fetch_components(url, key)
except ApiError:
    components = forms.FALLBACK_COMPONENTS
choices = {kind: [c["name"] for c in components[kind]] for kind in ("estimators", "rewards", "engines")}
error = st.session_state.get("new_job_error")  # {"field", "message"} from the last refusal
# Widgets whose starting value is a default (of the API, or of the selected model).
DEFAULTED_KEYS = ("new_estimator", "new_rollouts", "new_reward", "new_engine")


def model_changed() -> None:
    """Another model has other recommended defaults: let every defaulted widget start over."""
    for key in [k for k in st.session_state if k in DEFAULTED_KEYS or k.startswith("new_cfg.")]:
        del st.session_state[key]


def field_error(field: str) -> None:
    """The last refusal, under the widget of the field it names."""
    if error and error["field"] == field:
        st.error(error["message"], icon=":material/warning:")


if created := st.session_state.pop("new_job_created", None):
    st.success(f"Job **{created}** created and queued.", icon=":material/check_circle:")
    st.page_link("views/job_detail.py", label=f"Open {created}", icon=":material/monitoring:", query_params={"job": created})

if not models:
    st.warning("The API lists no models. Put Hugging Face model directories under the API's "
               "`BASIS_MODEL_ROOTS` (default `<data dir>/models`).", icon=":material/inventory_2:")

st.subheader("Model")
# The model is picked outside the form so that picking another one redraws the form with its
# defaults (a widget inside a form changes nothing until the form is submitted).
model = st.selectbox("Model", [m["id"] for m in models], key="new_model", on_change=model_changed)
field_error("model")
model_defaults = next((m.get("config_defaults") or {} for m in models if m["id"] == model), {})
# Every widget starts at the default the API would apply to the field: the generic one (GET
# /v1/components `defaults`) under the selected model's recommended ones (GET /v1/models
# `config_defaults`); never a copy kept here. An empty widget is left out of the config.
defaults = forms.deep_merge(components.get("defaults") or {}, model_defaults)
if model_defaults:
    st.caption(f"Model **{model}** recommends: "
               + ", ".join(f"`{path}` {value}" for path, value in forms.flatten(model_defaults))
               + ". The form starts from these; any field you leave out of the config gets them too.")


def default(field: str):
    return forms.get_path(defaults, field)


st.subheader("Dataset")
source = st.radio("Source", ["Pick an uploaded dataset", "Upload a JSONL file"], key="new_source",
                  horizontal=True, index=0 if datasets else 1)
with st.form("new_job"):
    if error:
        st.error(f"**The API refused the job** ({error['param'] or 'request'}): {error['message']}",
                 icon=":material/block:")
    if source == "Upload a JSONL file":
        upload = st.file_uploader("JSONL file: one {\"prompt\", \"answer\"} object per line",
                                  type=["jsonl", "json", "txt"], key="new_upload")
        dataset_name: str | None = st.text_input("Dataset name (optional)", key="new_dataset_name")
        dataset_id: str | None = None
    else:
        upload, dataset_name = None, None
        names = {d["id"]: f"{d['name']} ({d.get('rows', '?')} rows) · {d['id']}" for d in datasets}
        dataset_id = st.selectbox("Dataset", list(names), format_func=names.__getitem__, key="new_dataset")
    field_error("dataset")

    st.subheader("Estimator")
    c2, c3 = st.columns(2)
    single = [e["name"] for e in components["estimators"] if e["min_rollouts"] == 1]
    estimator = c2.selectbox("Estimator", choices["estimators"], key="new_estimator",
                             index=forms.choice_index(choices["estimators"], default("estimator")),
                             help=f"{', '.join(single)} use one rollout per prompt; the others "
                                  "need several. Their options: 'Estimators, rewards and engines' "
                                  "below the form.")
    with c2:
        field_error("estimator")
    rollouts = c3.number_input("Rollouts per prompt", 1, 256, default("rollouts_per_prompt"),
                               key="new_rollouts",
                               help="1 for basis / reinforce_pp; 8 is typical for grpo.")
    with c3:
        field_error("rollouts_per_prompt")

    st.subheader("Training")
    values: dict = {"estimator": estimator,
                    "rollouts_per_prompt": None if rollouts is None else int(rollouts)}
    # (field, label, widget kwargs); each value is the API's default
    numeric: list[tuple[str, str, dict[str, Any]]] = [
        ("batch_size", "Batch size (prompts per step)", dict(min_value=1)),
        ("max_steps", "Max steps", dict(min_value=1)),
        ("optimizer.lr", "Learning rate", dict(min_value=0.0, format="%.2e", step=1e-7)),
        ("loss.kl_coef", "KL coefficient", dict(min_value=0.0, format="%.3f", step=0.01)),
        ("sampling.temperature", "Temperature", dict(min_value=0.0, step=0.1)),
        ("sampling.max_new_tokens", "Max new tokens", dict(min_value=1)),
        ("n0", "BASIS offline rollouts n0", dict(min_value=0)),
        ("seed", "Seed", dict(min_value=0)),
        ("eval_every", "Eval every (steps)", dict(min_value=0)),
        ("checkpoint_every", "Checkpoint every (steps)", dict(min_value=0)),
        ("probe_every", "Probe every (steps)", dict(min_value=0,
                                                  help="value-MSE probe of every estimator; 0 = off")),
    ]
    cols = st.columns(4)
    for i, (field, label, kwargs) in enumerate(numeric):
        with cols[i % 4]:
            values[field] = st.number_input(label, key=f"new_cfg.{field}", value=default(field),
                                            **kwargs)
            field_error(field)
    c1, c2, c3, c4 = st.columns(4)
    values["reward"] = c1.selectbox("Reward", choices["rewards"], key="new_reward",
                                    index=forms.choice_index(choices["rewards"], default("reward")))
    values["engine"] = c2.selectbox("Rollout engine", choices["engines"], key="new_engine",
                                    index=forms.choice_index(choices["engines"], default("engine")))
    values["lora"] = c3.checkbox("LoRA adapter", key="new_lora")
    values["lora.r"] = c4.number_input("LoRA rank", 1, 1024, None, key="new_lora_r",
                                       placeholder="server default")
    for field in ("reward", "engine", "lora", "lora.r"):
        field_error(field)
    advanced = st.text_area("Advanced: more config fields as JSON (merged over the form)",
                            key="new_advanced", placeholder='{"estimator_options": {"normalize": "batch_std"}}')
    field_error(forms.ADVANCED)
    submitted = st.form_submit_button("Create job", type="primary")

with st.expander("Estimators, rewards and engines: what each does, and its options"):
    st.caption('Set options in "Advanced", e.g. {"estimator_options": {"history": false}}, '
               '{"reward_options": {...}} or {"engine_options": {...}}.')
    for tab, kind in zip(st.tabs(["Estimators", "Rewards", "Engines"]),
                         ("estimators", "rewards", "engines"), strict=True):
        with tab:
            for c in components[kind]:
                needs = (f" · needs {c['min_rollouts']}+ rollouts per prompt"
                         if c.get("min_rollouts", 1) > 1 else "")
                st.markdown(f"**{c['name']}**{needs} — {c['description']}")
                if rows := forms.option_rows(c["options"]):
                    st.dataframe(rows, hide_index=True, width="stretch")

if submitted:
    st.session_state.pop("new_job_error", None)
    try:
        config = forms.build_config(values, advanced)
    except ValueError as exc:
        st.session_state["new_job_error"] = {"field": forms.ADVANCED, "param": "advanced",
                                             "message": str(exc)}
        st.rerun()
    api = state.client()
    try:
        if source == "Upload a JSONL file":
            if upload is None:
                raise ApiError("choose a JSONL file to upload", param="file")
            dataset_id = api.upload_dataset(upload.getvalue(), upload.name, name=dataset_name or None).id
            state.clear_caches()
        if not dataset_id:
            raise ApiError("pick a dataset (or upload one)", param="dataset_id")
        if not model:
            raise ApiError("pick a model", param="model")
        job = api.create_job(dataset_id=dataset_id, model=model, config=config)
    except ApiError as exc:
        if exc.status in (None, 401, 403) and exc.param is None:
            state.stop_on_error(exc)  # unreachable API or wrong key: not a form problem
        st.session_state["new_job_error"] = {"field": forms.error_field(exc.param, exc.message),
                                             "param": exc.param, "message": exc.message}
        st.rerun()
    state.clear_caches()
    st.session_state["new_job_created"] = job.id
    st.session_state["job_id"] = job.id
    st.rerun()
